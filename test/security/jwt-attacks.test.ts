import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIENCE, build, ISSUER, JWT_SECRET, mintJwt, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

// RFC 8725 (JWT best current practice) and the fast-jwt advisories, one attack a test. Each asserts the status
// and the problem code.
let t: TestApp;
// RSA key pairs made off the event loop, before the app exists: made synchronously in a test, a 2048-bit key
// held the loop for over a second on a slow machine, and the app's load shedding (rightly) answered the next
// requests 503.
let rsa: { publicKey: KeyObject; privateKey: KeyObject };
beforeAll(async () => {
  rsa = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const now = () => Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const claims = (extra: Record<string, unknown> = {}) => ({ iss: ISSUER, aud: AUDIENCE, sub: 'crm', tenant: 'acme', scope: 'tokenize', iat: now(), exp: now() + 300, ...extra });
const hs = (payload: Record<string, unknown>, header: Record<string, unknown> = {}, key: string | Buffer = JWT_SECRET) =>
  createSigner({ key: key as string, algorithm: 'HS256', header: { alg: 'HS256', ...header } as never })(payload);

async function send(token: string) {
  return t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${token}` }, payload: { phone: NUMBERS.us.e164 } });
}
async function expectRefused(token: string) {
  const res = await send(token);
  expect(res.statusCode).toBe(401);
  expect(res.json().code).toBe('unauthorized');
}
async function expectAccepted(token: string) {
  const res = await send(token);
  expect(res.statusCode).toBe(201);
}

describe('JWT attacks', () => {
  it('refuses alg none in every spelling, with and without a signature', async () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      await expectRefused(`${b64({ alg, typ: 'JWT' })}.${b64(claims())}.`);
      await expectRefused(`${b64({ alg, typ: 'JWT' })}.${b64(claims())}.${hs(claims()).split('.')[2]}`);
    }
  });

  it('refuses a stripped or swapped signature', async () => {
    const [header, payload] = hs(claims()).split('.');
    await expectRefused(`${header}.${payload}.`);
    await expectRefused(`${header}.${b64(claims({ tenant: 'globex' }))}.${hs(claims()).split('.')[2]}`);
  });

  it('refuses algorithms outside the allow-list, including asymmetric ones signed with a key of their own', async () => {
    await expectRefused(createSigner({ key: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), algorithm: 'RS256' })(claims()));
    for (const algorithm of ['HS384', 'HS512'] as const) await expectRefused(createSigner({ key: JWT_SECRET, algorithm })(claims()));
  });

  it('refuses a token missing any required claim', async () => {
    for (const missing of ['exp', 'iss', 'aud', 'sub', 'tenant']) await expectRefused(hs(claims({ [missing]: undefined })));
  });

  // The verifier allows five seconds of clock skew, no more.
  it('holds expiry and not-before at the tolerance edges', async () => {
    await expectAccepted(hs(claims({ exp: now() - 3 })));
    await expectRefused(hs(claims({ exp: now() - 7 })));
    await expectAccepted(hs(claims({ nbf: now() + 3 })));
    await expectRefused(hs(claims({ nbf: now() + 7 })));
  });

  it('ignores injected kid values and key locations in the header', async () => {
    for (const kid of ['../../../../dev/null', "' OR '1'='1", '$(id)', '\u0000']) await expectAccepted(hs(claims(), { kid }));
    const jwk = rsa.publicKey.export({ format: 'jwk' });
    await expectRefused(createSigner({ key: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), algorithm: 'RS256', header: { alg: 'RS256', jwk, jku: 'http://127.0.0.1:1/jwks' } as never })(claims()));
    await expectRefused(hs(claims(), { jwk }, 'attacker-chosen-secret-attacker-chosen-secret'));
  });

  it('refuses unknown critical header parameters', async () => {
    await expectRefused(hs(claims(), { crit: ['exp'], exp: now() + 60 }));
  });

  it('takes audience arrays only when they name this vault, and refuses issuer arrays', async () => {
    await expectAccepted(hs(claims({ aud: ['someone-else', AUDIENCE] })));
    await expectRefused(hs(claims({ aud: ['someone-else'] })));
    await expectRefused(hs(claims({ aud: [] })));
    await expectRefused(hs(claims({ iss: [ISSUER] })));
  });

  it('never takes a token from the query string, a cookie or a non-bearer scheme', async () => {
    const token = mintJwt();
    for (const request of [
      { url: `/v1/tokenize?access_token=${token}`, headers: {} },
      { url: `/v1/tokenize?token=${token}`, headers: {} },
      { url: '/v1/tokenize', headers: { cookie: `token=${token}` } },
      { url: '/v1/tokenize', headers: { authorization: `Token ${token}` } },
      { url: '/v1/tokenize', headers: { authorization: token } },
    ]) {
      const res = await t.app.inject({ method: 'POST', ...request, payload: { phone: NUMBERS.us.e164 } });
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('unauthorized');
    }
  });

  it('refuses oversized and malformed tokens without a 5xx', async () => {
    await expectRefused(hs(claims({ pad: 'x'.repeat(20_000) }), {}, 'another-secret-another-secret-another-secret'));
    for (const junk of ['a.b.c', '...', 'eyJ.eyJ.', `${b64('x')}.${b64('y')}.z`]) await expectRefused(junk);
    // Not even valid UTF-8: refused before any credential is read.
    const garbled = await send('\u00ff\u00fe');
    expect(garbled.statusCode).toBe(400);
    expect(garbled.json().code).toBe('invalid_request');
  });

  it('refuses a token signed with a secret one byte off', async () => {
    const almost = JWT_SECRET.slice(0, -1) + (JWT_SECRET.endsWith('A') ? 'B' : 'A');
    await expectRefused(hs(claims(), {}, almost));
  });
});
