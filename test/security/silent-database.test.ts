import { createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgDb } from '../../src/store/db.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { NUMBERS } from '../helpers/numbers.js';
import { asVaultRole } from '../helpers/roles.js';

// Issue 14, item 9: a Postgres that accepts connections and answers nothing.
let testDb: TestDb;
beforeAll(async () => {
  testDb = await createTestDb();
});
afterAll(async () => {
  await testDb.drop();
});

/** A TCP proxy in front of Postgres that can go silent: connections still open, nothing gets through either way. */
async function silenceableProxy(target: { host: string; port: number }) {
  let silent = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    client.on('close', () => sockets.delete(client));
    if (silent) {
      client.on('data', () => undefined); // accepted, read, never answered
      return;
    }
    const upstream = new Socket();
    sockets.add(upstream);
    upstream.on('error', () => undefined);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.connect(target.port, target.host);
    client.on('data', (chunk) => silent || upstream.write(chunk));
    upstream.on('data', (chunk) => silent || client.write(chunk));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    silence: (on: boolean) => (silent = on),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('a Postgres that accepts connections and answers nothing', () => {
  it('gets every request a 503 within about 1.5 s and readiness a failure within 1 s, and recovers without a restart', { timeout: 60_000 }, async () => {
    const target = new URL(testDb.url);
    const proxy = await silenceableProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const proxied = new URL(asVaultRole(testDb.url));
    proxied.host = `127.0.0.1:${proxy.port}`;
    const db = createPgDb({ connectionString: proxied.toString(), schema: testDb.schema, max: 6 });
    let t: TestApp | null = null;
    try {
      t = await build({}, { ...testDb, db });
      const app = t.app;
      const headers = bearer({ scope: 'tokenize detokenize lookup' });
      const token = (await app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: NUMBERS.us.e164 } })).json().token;
      expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);

      proxy.silence(true);
      const timed = async (call: () => Promise<{ statusCode: number; json(): { code?: string } }>) => {
        const started = performance.now();
        const res = await call();
        return { ms: performance.now() - started, status: res.statusCode, code: res.json().code };
      };
      const requests = Array.from({ length: 18 }, (_, i) =>
        timed(() =>
          i % 3 === 0
            ? app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: NUMBERS.gb.e164 } })
            : i % 3 === 1
              ? app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [token] } })
              : app.inject({ method: 'POST', url: '/v1/lookup', headers, payload: { phone: NUMBERS.us.e164 } }),
        ),
      );
      const readiness = timed(() => app.inject({ method: 'GET', url: '/readyz' }));
      const answers = await Promise.all(requests);
      for (const answer of answers) {
        expect(answer).toMatchObject({ status: 503, code: 'unavailable' });
        // About a second and a half, with room for a loaded two-core machine.
        expect(answer.ms).toBeLessThan(2_200);
      }
      const ready = await readiness;
      expect(ready.status).toBe(503);
      expect(ready.ms).toBeLessThan(1_300);
      // Requests that arrive while it stays silent fail fast, not one timeout after another.
      const later = await timed(() => app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [token] } }));
      expect(later.status).toBe(503);
      expect(later.ms).toBeLessThan(2_200);

      proxy.silence(false);
      let recovered = 0;
      for (let attempt = 0; attempt < 40 && recovered !== 200; attempt++) {
        recovered = (await app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [token] } })).statusCode;
        if (recovered !== 200) await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(recovered).toBe(200);
      expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    } finally {
      await t?.app.close();
      await db.close();
      await proxy.close();
    }
  });
});
