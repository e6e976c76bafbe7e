import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { startServer } from '../src/server.js';
import { createPgDb } from '../src/store/db.js';
import { mintJwt } from './helpers/build.js';
import { createTestDb, type TestDb } from './helpers/db.js';
import { NUMBERS } from './helpers/numbers.js';
import { AUDIENCE, ISSUER, JWT_SECRET } from './helpers/build.js';

let testDb: TestDb;
beforeAll(async () => {
  testDb = await createTestDb();
});
afterAll(async () => {
  await testDb.drop();
});

const env = (extra: Record<string, string> = {}) => ({
  DATABASE_URL: testDb.url,
  VAULT_MASTER_KEY: masterKey,
  JWT_SECRET,
  JWT_ISSUER: ISSUER,
  JWT_AUDIENCE: AUDIENCE,
  PORT: '0',
  ...extra,
});
const masterKey = randomBytes(32).toString('base64');
const silent = pino({ level: 'silent' });
// startServer closes the pool it is given: each start gets its own on the test schema.
const schemaDb = () => createPgDb({ connectionString: testDb.url, schema: testDb.schema, max: 4 });

describe('server', () => {
  it('serves HTTPS with TLS_CERT_FILE and TLS_KEY_FILE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pv-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const config = loadConfig(env({ TLS_CERT_FILE: join(dir, 'cert.pem'), TLS_KEY_FILE: join(dir, 'key.pem') }));
    const server = await startServer(config, silent, schemaDb());
    try {
      expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const body = await new Promise<string>((resolve, reject) => {
        const req = request(`${server.url}/v1/tokenize`, {
          method: 'POST',
          ca: readFileSync(join(dir, 'cert.pem')),
          headers: { authorization: `Bearer ${mintJwt()}`, 'content-type': 'application/json' },
        }, (res) => {
          let text = '';
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve(`${res.statusCode} ${text}`));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ phone: NUMBERS.us.e164 }));
      });
      expect(body).toMatch(/^201 \{"token":"tok_/);
      // Plain HTTP on the TLS port gets nothing useful.
      await expect(fetch(server.url.replace('https', 'http') + '/healthz')).rejects.toThrow();
    } finally {
      await server.close();
    }
  });

  it('refuses to start with only one of the TLS files', () => {
    expect(() => loadConfig(env({ TLS_CERT_FILE: '/etc/hostname' }))).toThrow(/TLS_CERT_FILE and TLS_KEY_FILE/);
  });

  it('sweeps expired tokens in-process every SWEEP_INTERVAL', async () => {
    const server = await startServer(loadConfig(env({ SWEEP_INTERVAL: '1s' })), silent, schemaDb());
    try {
      const res = await fetch(`${server.url}/v1/tokenize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${mintJwt({ tenant: 'sweepy' })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ phone: NUMBERS.gb.e164, ttlSeconds: 1 }),
      });
      expect(res.status).toBe(201);
      const count = async () => Number((await testDb.db.query<{ n: string }>(`SELECT count(*) AS n FROM tokens WHERE tenant_id = 'sweepy'`)).rows[0]!.n);
      expect(await count()).toBe(1);
      let left = 1;
      for (let i = 0; i < 40 && left > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = await count();
      }
      expect(left).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('finishes in-flight requests on close, then stops taking connections', async () => {
    const server = await startServer(loadConfig(env()), silent, schemaDb());
    const items = Array.from({ length: 1000 }, (_, i) => ({ phone: `+1201555${String(2000 + i)}` }));
    const inFlight = fetch(`${server.url}/v1/tokenize/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${mintJwt()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ items }),
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const started = Date.now();
    const closed = server.close();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { results: unknown[] }).results).toHaveLength(1000);
    await closed;
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });
});
