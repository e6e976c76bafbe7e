import { generateKeyPair, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { AUDIENCE, build, ISSUER, mintJwt, type TestApp } from '../helpers/build.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { NUMBERS } from '../helpers/numbers.js';

// Issue 14, item 8: JWKS keys and time.
let testDb: TestDb;
let rsa: { publicKey: KeyObject; privateKey: KeyObject };
let other: { publicKey: KeyObject; privateKey: KeyObject };
let server: Server;
let serving: Array<{ key: KeyObject; kid: string }> = [];
let up = true;
let hits = 0;
let url: string;
const apps: TestApp[] = [];

beforeAll(async () => {
  testDb = await createTestDb();
  [rsa, other] = await Promise.all([promisify(generateKeyPair)('rsa', { modulusLength: 2048 }), promisify(generateKeyPair)('rsa', { modulusLength: 2048 })]);
  server = createServer((_req, res) => {
    hits++;
    if (!up) return void res.writeHead(503).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: serving.map(({ key, kid }) => ({ ...key.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' })) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
});
afterAll(async () => {
  for (const app of apps) await app.close();
  server.close();
  await testDb.drop();
});

async function jwksApp(refreshMs: number, minRefreshMs: number) {
  const app = await build(
    { jwt: { verification: { kind: 'jwks', jwksUrl: url, refreshMs, minRefreshMs }, algorithms: ['RS256'], issuer: ISSUER, audience: AUDIENCE, clockLeewayMs: 5_000, maxLifetimeMs: 24 * 3_600_000 } },
    testDb,
  );
  apps.push(app);
  return app;
}

const now = () => Math.floor(Date.now() / 1000);
const rs = (privateKey: KeyObject, kid: string, claims: Record<string, unknown> = {}) =>
  createSigner({ key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), algorithm: 'RS256', kid })({
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'crm',
    tenant: 'acme',
    scope: 'tokenize',
    iat: now(),
    exp: now() + 300,
    ...claims,
  });
const tokenize = (app: TestApp, token: string) =>
  app.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${token}` }, payload: { phone: NUMBERS.us.e164 } });
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('JWKS', () => {
  it('stops verifying a key removed from the set within the refresh interval, cached verifications included', async () => {
    up = true;
    serving = [
      { key: rsa.publicKey, kid: 'one' },
      { key: other.publicKey, kid: 'two' },
    ];
    const app = await jwksApp(400, 50);
    const token = rs(rsa.privateKey, 'one');
    expect((await tokenize(app, token)).statusCode).toBe(201);
    expect((await tokenize(app, token)).statusCode).toBe(201); // now from the cache
    serving = [{ key: other.publicKey, kid: 'two' }];
    await wait(500);
    const refused = await tokenize(app, token);
    expect(refused.statusCode).toBe(401);
    expect(refused.json().code).toBe('unauthorized');
    expect((await tokenize(app, rs(other.privateKey, 'two'))).statusCode).toBe(201);
  });

  it('fetches a failing endpoint at most once per interval, whatever it answers and however many kids are asked', async () => {
    up = false;
    const app = await jwksApp(60_000, 1_000);
    hits = 0;
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => tokenize(app, rs(rsa.privateKey, `kid-${i}`))));
    expect(answers.every((res) => res.statusCode === 503)).toBe(true);
    for (let i = 0; i < 10; i++) await tokenize(app, rs(rsa.privateKey, `later-${i}`));
    expect(hits).toBe(1);
    // Once it answers again, and the interval has passed, the set is fetched and tokens verify.
    up = true;
    serving = [{ key: rsa.publicKey, kid: 'one' }];
    await wait(1_100);
    expect((await tokenize(app, rs(rsa.privateKey, 'one'))).statusCode).toBe(201);
    // A flood of unknown kids against a healthy endpoint: still at most one fetch per interval.
    hits = 0;
    await Promise.all(Array.from({ length: 30 }, (_, i) => tokenize(app, rs(rsa.privateKey, `bogus-${i}`))));
    expect(hits).toBeLessThanOrEqual(1);
  });
});

describe('token times', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await build({}, testDb);
    apps.push(app);
  });
  const status = async (claims: Record<string, unknown>) =>
    (await app.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${mintJwt(claims)}` }, payload: { phone: NUMBERS.us.e164 } })).statusCode;

  it('refuses an iat in the future beyond the leeway, and takes one within it', async () => {
    expect(await status({ iat: now() + 60, exp: now() + 300 })).toBe(401);
    expect(await status({ iat: now() + 3, exp: now() + 300 })).toBe(201);
    expect(await status({ iat: 'yesterday' })).toBe(401);
  });

  it('refuses a token that lives longer than JWT_MAX_LIFETIME, and one without iat, whose life nothing bounds', async () => {
    expect(await status({ iat: now(), exp: now() + 25 * 3600 })).toBe(401);
    expect(await status({ iat: now() - 3600, exp: now() + 23 * 3600 - 60 })).toBe(201);
    // A year-long token without iat, in what would be its last hour, and a short one: both refused.
    expect(await status({ iat: undefined, exp: now() + 3600 })).toBe(401);
    expect(await status({ iat: undefined, exp: now() + 60 })).toBe(401);
    expect(await status({ iat: null })).toBe(401);
  });

  it('applies the same leeway to exp and nbf', async () => {
    expect(await status({ exp: now() - 3 })).toBe(201);
    expect(await status({ exp: now() - 30 })).toBe(401);
    expect(await status({ nbf: now() + 3 })).toBe(201);
    expect(await status({ nbf: now() + 60 })).toBe(401);
  });
});

describe('JWT_SECRET', () => {
  it('refuses at start-up a secret that is not randomness, naming the variable and never printing it', async () => {
    for (const secret of ['abcdefghijklmnopqrstuvwxyz012345', 'qwertyuiopasdfghjklzxcvbnm123456', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']) {
      const res = await runCli(['serve'], { DATABASE_URL: testDb.url, VAULT_MASTER_KEY: 'x', JWT_SECRET: secret, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE });
      expect(res.code).toBe(78);
      expect(res.err).toMatch(/JWT_SECRET: is not random enough/);
      expect(res.err).not.toContain(secret);
    }
  });
});
