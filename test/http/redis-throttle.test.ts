import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RateLimitsConfig } from '../../src/config/index.js';
import { parseMasterKeys } from '../../src/crypto/master-keys.js';
import { createRedis } from '../../src/store/redis.js';
import { bearer, build, uniqueName, type TestApp } from '../helpers/build.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { NUMBERS } from '../helpers/numbers.js';

// A real Redis: the one CI starts (TEST_REDIS_URL), 127.0.0.1:6379 on these machines.
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const limit = (max: number, windowMs = 60_000) => ({ max, windowMs });
const limits = (overrides: Partial<RateLimitsConfig> = {}): RateLimitsConfig => ({
  tokenize: limit(4),
  detokenize: limit(100),
  lookup: limit(10),
  admin: limit(10),
  unauthenticated: limit(10),
  detokenizeItems: limit(10),
  perClient: {},
  failOpen: ['tokenize'],
  ...overrides,
});

const masterKeys = parseMasterKeys(randomBytes(32).toString('base64'));
let testDb: TestDb;
const clients: Redis[] = [];
const apps: TestApp[] = [];
beforeAll(async () => {
  testDb = await createTestDb();
});
afterAll(async () => {
  for (const app of apps) await app.close();
  for (const client of clients) client.disconnect();
  await testDb.drop();
});

async function instance(url: string, rateLimits: RateLimitsConfig): Promise<TestApp> {
  const redis = createRedis(url);
  clients.push(redis);
  if (url === REDIS_URL) await new Promise((resolve) => redis.once('ready', resolve));
  // Instances of one vault share the database, so they share its master key too.
  const app = await build({ rateLimits, masterKeys }, testDb, { redis });
  apps.push(app);
  return app;
}

// Each run uses its own tenant, so that counters left in the shared Redis by earlier runs never interfere.
const tenant = () => uniqueName('t');

describe('throttling shared through Redis', () => {
  it('two instances share one client budget', async () => {
    const [a, b] = [await instance(REDIS_URL, limits()), await instance(REDIS_URL, limits())];
    const headers = bearer({ tenant: tenant(), scope: 'tokenize' });
    const send = (t: TestApp) => t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: NUMBERS.us.e164 } });
    expect([(await send(a)).statusCode, (await send(b)).statusCode, (await send(a)).statusCode, (await send(b)).statusCode]).toEqual([201, 201, 201, 201]);
    const limited = await send(a);
    expect(limited.statusCode).toBe(429);
    expect(limited.json().code).toBe('rate_limited');
    expect((await send(b)).statusCode).toBe(429);
  });

  it('counts detokenize in items, across instances: a batch spends its size', async () => {
    const [a, b] = [await instance(REDIS_URL, limits()), await instance(REDIS_URL, limits())];
    const headers = bearer({ tenant: tenant(), scope: 'detokenize' });
    const tokens = (n: number) => Array.from({ length: n }, () => `tok_${randomBytes(16).toString('base64url')}`);
    const first = await a.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: tokens(6) } });
    expect(first.statusCode).toBe(200);
    expect(first.headers['x-ratelimit-items-remaining']).toBe('4');
    const over = await b.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: tokens(5) } });
    expect(over.statusCode).toBe(429);
    expect(over.json().code).toBe('rate_limited');
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    // A refused request spends nothing: 4 still fit.
    expect((await b.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: tokens(4) } })).statusCode).toBe(200);
  });

  it('applies per-client overrides', async () => {
    const special = tenant();
    const app = await instance(REDIS_URL, limits({ perClient: { [`${special}/crm`]: { classes: { tokenize: limit(1) }, detokenizeItems: limit(2) } } }));
    const headers = bearer({ tenant: special, sub: 'crm', scope: 'tokenize detokenize' });
    const send = () => app.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: NUMBERS.us.e164 } });
    expect((await send()).statusCode).toBe(201);
    expect((await send()).statusCode).toBe(429);
    const detokenize = await app.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: Array(3).fill(`tok_${'A'.repeat(22)}`) } });
    expect(detokenize.statusCode).toBe(429);
    // Another client of the same tenant keeps the defaults.
    const other = bearer({ tenant: special, sub: 'other', scope: 'tokenize' });
    expect((await app.app.inject({ method: 'POST', url: '/v1/tokenize', headers: other, payload: { phone: NUMBERS.us.e164 } })).statusCode).toBe(201);
  });

  it('with Redis unreachable, detokenize fails closed with 503 within a second; tokenize keeps working', async () => {
    const app = await instance('redis://127.0.0.1:1', limits());
    const headers = bearer({ tenant: tenant(), scope: 'tokenize detokenize' });
    const started = Date.now();
    const detokenize = await app.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [`tok_${'A'.repeat(22)}`] } });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(detokenize.statusCode).toBe(503);
    expect(detokenize.json().code).toBe('unavailable');
    const tokenize = await app.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: NUMBERS.us.e164 } });
    expect(tokenize.statusCode).toBe(201);
  });

  it('fails tokenize closed too when configured to', async () => {
    const app = await instance('redis://127.0.0.1:1', limits({ failOpen: [] }));
    const res = await app.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ scope: 'tokenize' }), payload: { phone: NUMBERS.us.e164 } });
    expect(res.statusCode).toBe(503);
    expect(res.json().code).toBe('unavailable');
  });
});
