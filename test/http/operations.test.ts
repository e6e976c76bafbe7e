import { createServer, Socket, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgDb } from '../../src/store/db.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { NUMBERS } from '../helpers/numbers.js';

let testDb: TestDb;
beforeAll(async () => {
  testDb = await createTestDb();
});
afterAll(async () => {
  await testDb.drop();
});

describe('GET /metrics', () => {
  it('exposes request durations, item outcomes, decryption failures, keys and pool use, with no tenant labels', async () => {
    const t = await build({}, testDb);
    try {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers: bearer({ tenant: 'metrics' }), payload: { items: [{ phone: NUMBERS.us.e164 }, { phone: 'nope' }] } });
      const token = res.json().results[0].token;
      await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant: 'metrics' }), payload: { tokens: [token, `tok_${'A'.repeat(22)}`] } });
      const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
      const text = metrics.body;
      expect(text).toMatch(/phonevault_http_request_duration_seconds_count\{route="\/v1\/tokenize\/batch",method="POST",status="200"\} 1/);
      expect(text).toContain('phonevault_tokenize_items_total{outcome="stored"} 1');
      expect(text).toContain('phonevault_tokenize_items_total{outcome="rejected"} 1');
      expect(text).toContain('phonevault_detokenize_items_total{outcome="plain"} 1');
      expect(text).toContain('phonevault_detokenize_items_total{outcome="not_found"} 1');
      expect(text).toContain('phonevault_decryption_failures_total 0');
      expect(text).toContain('phonevault_data_keys{state="active"} 1');
      expect(text).toMatch(/phonevault_data_key_budget_used_ratio \d/);
      expect(text).toMatch(/phonevault_db_pool_connections\{state="total"\} \d+/);
      expect(text).not.toContain('metrics"');
      expect(text).not.toContain('tenant');
    } finally {
      await t.close();
    }
  });
});

/** A TCP proxy in front of Postgres that a test can cut and restore, as a network outage would. */
async function startProxy(target: { host: string; port: number }, port = 0) {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    upstream.connect(target.port, target.host);
    client.pipe(upstream).pipe(client);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('/readyz and storage outages', () => {
  it('fails within a second while Postgres is unreachable, and recovers by itself', async () => {
    const url = new URL(testDb.url);
    let proxy = await startProxy({ host: url.hostname, port: Number(url.port || 5432) });
    const proxied = new URL(testDb.url);
    proxied.host = `127.0.0.1:${proxy.port}`;
    const db = createPgDb({ connectionString: proxied.toString(), schema: testDb.schema, max: 4 });
    const t = await build({}, { ...testDb, db });
    try {
      expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
      const port = proxy.port;
      await proxy.stop();

      let started = Date.now();
      const down = await t.app.inject({ method: 'GET', url: '/readyz' });
      expect(Date.now() - started).toBeLessThan(1000);
      expect(down.statusCode).toBe(503);
      started = Date.now();
      const failed = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer(), payload: { phone: NUMBERS.us.e164 } });
      expect(Date.now() - started).toBeLessThan(1000);
      expect(failed.statusCode).toBe(503);
      expect(failed.json().code).toBe('unavailable');
      expect(failed.headers['retry-after']).toBe('1');

      proxy = await startProxy({ host: url.hostname, port: Number(url.port || 5432) }, port);
      let ready = 0;
      for (let attempt = 0; attempt < 20 && ready !== 200; attempt++) {
        ready = (await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode;
        if (ready !== 200) await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(ready).toBe(200);
      expect((await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer(), payload: { phone: NUMBERS.us.e164 } })).statusCode).toBe(201);
    } finally {
      await t.app.close();
      await db.close();
      await proxy.stop();
    }
  });
});

describe('load shedding', () => {
  it('answers 503 unavailable with retry-after while the event loop lags', async () => {
    const t = await build({}, testDb, { loadShedding: { maxEventLoopDelayMs: 50, sampleIntervalMs: 10 } });
    try {
      expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      const until = Date.now() + 300;
      while (Date.now() < until) {
        // Block the event loop, as a CPU-bound overload would.
      }
      await new Promise((resolve) => setTimeout(resolve, 15));
      const shed = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer(), payload: { phone: NUMBERS.us.e164 } });
      expect(shed.statusCode).toBe(503);
      expect(shed.json().code).toBe('unavailable');
      expect(shed.headers['retry-after']).toBe('5');
    } finally {
      await t.app.close();
    }
  });
});
