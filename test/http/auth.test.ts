import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIENCE, ISSUER, JWT_SECRET, build, mintJwt, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const tokenizeWith = (authorization: string | undefined) =>
  t.app.inject({
    method: 'POST',
    url: '/v1/tokenize',
    headers: authorization === undefined ? {} : { authorization },
    payload: { phone: NUMBERS.us.e164 },
  });

async function expectUnauthorized(authorization: string | undefined) {
  const res = await tokenizeWith(authorization);
  expect(res.statusCode).toBe(401);
  expect(res.json()).toMatchObject({ status: 401, code: 'unauthorized' });
  expect(res.headers['www-authenticate']).toBe('Bearer realm="phonevault", error="invalid_token"');
}

const now = () => Math.floor(Date.now() / 1000);
const base64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('authentication', () => {
  it('accepts a valid token', async () => {
    expect((await tokenizeWith(`Bearer ${mintJwt({ scope: 'tokenize' })}`)).statusCode).toBe(201);
  });

  it('answers 401 with WWW-Authenticate without a token or with a malformed header', async () => {
    for (const header of [undefined, '', 'Bearer', 'Bearer ', `Basic ${mintJwt()}`, 'Bearer not.a.jwt', `Bearer ${mintJwt()} extra`]) {
      await expectUnauthorized(header);
    }
  });

  it('answers 401 for a bad signature, an expired token, and the wrong issuer or audience', async () => {
    await expectUnauthorized(`Bearer ${mintJwt({}, { secret: 'another-secret-another-secret-123456789' })}`);
    await expectUnauthorized(`Bearer ${mintJwt({ exp: now() - 60 })}`);
    await expectUnauthorized(`Bearer ${mintJwt({ iss: 'https://evil.test' })}`);
    await expectUnauthorized(`Bearer ${mintJwt({ aud: 'someone-else' })}`);
    await expectUnauthorized(`Bearer ${mintJwt({ nbf: now() + 600 })}`);
  });

  it('answers 401 when a required claim is missing', async () => {
    for (const claim of ['exp', 'iss', 'aud', 'sub', 'tenant']) {
      await expectUnauthorized(`Bearer ${mintJwt({ [claim]: undefined })}`);
    }
  });

  it('answers 401 for claims of the wrong shape', async () => {
    for (const claims of [{ tenant: '' }, { tenant: 'a/b' }, { tenant: 42 }, { sub: '' }, { scope: ['tokenize'] }]) {
      await expectUnauthorized(`Bearer ${mintJwt(claims as Record<string, unknown>)}`);
    }
  });

  // RFC 8725 §2.1: "none" must never be accepted, even with otherwise perfect claims.
  it('refuses alg none', async () => {
    const claims = { iss: ISSUER, aud: AUDIENCE, sub: 'crm', tenant: 'acme', scope: 'tokenize', exp: now() + 60 };
    await expectUnauthorized(`Bearer ${base64url({ alg: 'none', typ: 'JWT' })}.${base64url(claims)}.`);
  });

  it('refuses algorithms outside the allow-list, even signed with the right secret', async () => {
    const claims = { iss: ISSUER, aud: AUDIENCE, sub: 'crm', tenant: 'acme', scope: 'tokenize', exp: now() + 60 };
    for (const algorithm of ['HS384', 'HS512'] as const) {
      await expectUnauthorized(`Bearer ${createSigner({ key: JWT_SECRET, algorithm })(claims)}`);
    }
  });

  it('never takes a token from the query string', async () => {
    const res = await t.app.inject({ method: 'POST', url: `/v1/tokenize?access_token=${mintJwt()}`, payload: { phone: NUMBERS.us.e164 } });
    expect(res.statusCode).toBe(401);
  });

  it('answers 401 before reading the body', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { 'content-type': 'application/json' }, payload: '{not json' });
    expect(res.statusCode).toBe(401);
  });
});

describe('authorization', () => {
  it('answers 403 insufficient_scope naming the scope needed', async () => {
    const res = await tokenizeWith(`Bearer ${mintJwt({ scope: 'detokenize lookup' })}`);
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('insufficient_scope');
    expect(res.headers['www-authenticate']).toBe('Bearer realm="phonevault", error="insufficient_scope", scope="tokenize"');
  });

  it('matches scopes exactly, not by prefix or case', async () => {
    for (const scope of ['tokenizer', 'TOKENIZE', 'tokenize:extra', 'xtokenize']) {
      expect((await tokenizeWith(`Bearer ${mintJwt({ scope })}`)).statusCode).toBe(403);
    }
  });
});
