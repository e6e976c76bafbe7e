import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
beforeAll(async () => {
  const limit = (max: number) => ({ max, windowMs: 60_000 });
  t = await build({
    rateLimits: { tokenize: limit(3), detokenize: limit(2), lookup: limit(2), admin: limit(1), unauthenticated: limit(2), detokenizeItems: limit(1000), perClient: {}, failOpen: [] },
  });
});
afterAll(async () => {
  await t.close();
});

const tokenize = (claims: Record<string, string>, remoteAddress = '10.0.0.1') =>
  t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ scope: 'tokenize detokenize', ...claims }), payload: { phone: NUMBERS.us.e164 }, remoteAddress });

describe('throttling', () => {
  it('gives each client its own budget per class, and answers 429 rate_limited with retry-after', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await tokenize({ sub: 'a' });
      expect(res.statusCode).toBe(201);
      expect(res.headers['x-ratelimit-limit']).toBe('3');
      expect(res.headers['x-ratelimit-remaining']).toBe(String(2 - i));
    }
    const limited = await tokenize({ sub: 'a' });
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['content-type']).toContain('application/problem+json');
    expect(limited.json().code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);

    // Same client from another address: the budget follows the client, not the IP.
    expect((await tokenize({ sub: 'a' }, '10.0.0.99')).statusCode).toBe(429);
    // Another client, and the same sub in another tenant, are untouched.
    expect((await tokenize({ sub: 'b' })).statusCode).toBe(201);
    expect((await tokenize({ sub: 'a', tenant: 'globex' })).statusCode).toBe(201);
    // Another class has its own budget.
    const detokenize = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ sub: 'a', scope: 'detokenize' }), payload: { tokens: [`tok_${'A'.repeat(22)}`] } });
    expect(detokenize.statusCode).toBe(200);
  });

  it('throttles unauthenticated requests by IP', async () => {
    const unauthenticated = () => t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: 'Bearer nope' }, payload: {}, remoteAddress: '10.9.9.9' });
    expect((await unauthenticated()).statusCode).toBe(401);
    expect((await unauthenticated()).statusCode).toBe(401);
    const limited = await unauthenticated();
    expect(limited.statusCode).toBe(429);
    expect(limited.json().code).toBe('rate_limited');
    // A verified client on the same IP is not held back by the failures.
    expect((await tokenize({ sub: 'c' }, '10.9.9.9')).statusCode).toBe(201);
  });

  it('throttles the 404 handler by IP', async () => {
    const probe = () => t.app.inject({ method: 'GET', url: '/v1/nothing-here', remoteAddress: '10.7.7.7' });
    expect((await probe()).statusCode).toBe(404);
    expect((await probe()).statusCode).toBe(404);
    expect((await probe()).statusCode).toBe(429);
  });
});
