import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JwtConfig } from '../../src/config/index.js';
import { parseMasterKeys } from '../../src/crypto/master-keys.js';
import { AUDIENCE, build, ISSUER, type TestApp } from '../helpers/build.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { NUMBERS } from '../helpers/numbers.js';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pem = (key: KeyObject) => key.export({ type: 'spki', format: 'pem' }).toString();
const privatePem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString();

const claims = () => ({ iss: ISSUER, aud: AUDIENCE, sub: 'crm', tenant: 'acme', scope: 'tokenize', exp: Math.floor(Date.now() / 1000) + 300 });
const sign = (key: string | Buffer, algorithm: 'RS256' | 'ES256' | 'HS256', header: Record<string, unknown> = {}) =>
  createSigner({ key: key as string, algorithm, ...(header.kid ? { kid: header.kid as string } : {}), header: { alg: algorithm, ...header } })(claims());

const masterKeys = parseMasterKeys(randomBytes(32).toString('base64'));
let testDb: TestDb;
const apps: TestApp[] = [];
beforeAll(async () => {
  testDb = await createTestDb();
});
afterAll(async () => {
  for (const app of apps) await app.close();
  await testDb.drop();
});

async function appWith(jwt: Pick<JwtConfig, 'verification' | 'algorithms'>) {
  const app = await build({ jwt: { ...jwt, issuer: ISSUER, audience: AUDIENCE, clockLeewayMs: 5_000, maxLifetimeMs: 24 * 3600_000 }, masterKeys }, testDb);
  apps.push(app);
  const status = async (token: string) =>
    (await app.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${token}` }, payload: { phone: NUMBERS.us.e164 } })).statusCode;
  return { app, status };
}

describe('RS256 and ES256 with a configured public key', () => {
  it('accepts RS256 tokens signed by the key, and nothing else', async () => {
    const { status } = await appWith({ verification: { kind: 'publicKey', publicKey: pem(rsa.publicKey) }, algorithms: ['RS256'] });
    expect(await status(sign(privatePem(rsa.privateKey), 'RS256'))).toBe(201);
    expect(await status(sign(privatePem(attacker.privateKey), 'RS256'))).toBe(401);
    expect(await status(sign(privatePem(ec.privateKey), 'ES256'))).toBe(401);
  });

  // The classic confusion: an HS256 token whose HMAC key is the server's public key, in any spelling.
  it('refuses HS256 tokens signed with the public key PEM, with or without extra whitespace', async () => {
    const { status } = await appWith({ verification: { kind: 'publicKey', publicKey: pem(rsa.publicKey) }, algorithms: ['RS256'] });
    for (const secret of [pem(rsa.publicKey), `\n${pem(rsa.publicKey)}`, `  ${pem(rsa.publicKey)}`, pem(rsa.publicKey).trim()]) {
      expect(await status(sign(Buffer.from(secret), 'HS256'))).toBe(401);
    }
  });

  it('accepts ES256 with an EC key', async () => {
    const { status } = await appWith({ verification: { kind: 'publicKey', publicKey: pem(ec.publicKey) }, algorithms: ['ES256'] });
    expect(await status(sign(privatePem(ec.privateKey), 'ES256'))).toBe(201);
    expect(await status(sign(privatePem(rsa.privateKey), 'RS256'))).toBe(401);
  });
});

describe('JWKS', () => {
  let jwks: Server;
  let evil: Server;
  let jwksUrl: string;
  let evilHits = 0;
  let jwksUp = true;
  beforeAll(async () => {
    const body = JSON.stringify({
      keys: [
        { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig', alg: 'RS256' },
        { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig', alg: 'ES256' },
      ],
    });
    jwks = createServer((_req, res) => {
      if (!jwksUp) {
        res.writeHead(503).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    });
    evil = createServer((_req, res) => {
      evilHits++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [{ ...attacker.publicKey.export({ format: 'jwk' }), kid: 'evil' }] }));
    });
    await Promise.all([new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r)), new Promise<void>((r) => evil.listen(0, '127.0.0.1', r))]);
    jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(() => {
    jwks.close();
    evil.close();
  });

  it('verifies RS256 and ES256 tokens by kid', async () => {
    const { status } = await appWith({ verification: { kind: 'jwks', jwksUrl, refreshMs: 300_000, minRefreshMs: 30_000 }, algorithms: ['RS256', 'ES256'] });
    expect(await status(sign(privatePem(rsa.privateKey), 'RS256', { kid: 'rsa-1' }))).toBe(201);
    expect(await status(sign(privatePem(ec.privateKey), 'ES256', { kid: 'ec-1' }))).toBe(201);
  });

  it('refuses an unknown kid, a kid of the wrong key type, and a token without kid', async () => {
    const { status } = await appWith({ verification: { kind: 'jwks', jwksUrl, refreshMs: 300_000, minRefreshMs: 30_000 }, algorithms: ['RS256', 'ES256'] });
    expect(await status(sign(privatePem(rsa.privateKey), 'RS256', { kid: 'nope' }))).toBe(401);
    expect(await status(sign(privatePem(rsa.privateKey), 'RS256', { kid: 'ec-1' }))).toBe(401);
    expect(await status(sign(privatePem(rsa.privateKey), 'RS256'))).toBe(401);
  });

  // RFC 8725 §3.10: key locations in the header are attacker-controlled; they are never fetched.
  it('never follows jku or x5u, and refuses the attacker key they point at', async () => {
    const { status } = await appWith({ verification: { kind: 'jwks', jwksUrl, refreshMs: 300_000, minRefreshMs: 30_000 }, algorithms: ['RS256', 'ES256'] });
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/jwks.json`;
    expect(await status(sign(privatePem(attacker.privateKey), 'RS256', { kid: 'evil', jku: evilUrl, x5u: evilUrl }))).toBe(401);
    expect(evilHits).toBe(0);
  });

  it('answers 503 while the JWKS is down and no key was ever fetched, and keeps cached keys when it goes down later', async () => {
    jwksUp = false;
    const cold = await appWith({ verification: { kind: 'jwks', jwksUrl, refreshMs: 300_000, minRefreshMs: 30_000 }, algorithms: ['RS256', 'ES256'] });
    const res = await cold.app.app.inject({
      method: 'POST',
      url: '/v1/tokenize',
      headers: { authorization: `Bearer ${sign(privatePem(rsa.privateKey), 'RS256', { kid: 'rsa-1' })}` },
      payload: { phone: NUMBERS.us.e164 },
    });
    expect(res.statusCode).toBe(503);
    expect(res.json().code).toBe('unavailable');

    jwksUp = true;
    const warm = await appWith({ verification: { kind: 'jwks', jwksUrl, refreshMs: 300_000, minRefreshMs: 30_000 }, algorithms: ['RS256', 'ES256'] });
    expect(await warm.status(sign(privatePem(rsa.privateKey), 'RS256', { kid: 'rsa-1' }))).toBe(201);
    jwksUp = false;
    expect(await warm.status(sign(privatePem(ec.privateKey), 'ES256', { kid: 'ec-1' }))).toBe(201);
    jwksUp = true;
  });
});
