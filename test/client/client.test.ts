import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createClient, isPhonevaultError, PhonevaultError, type PhonevaultClient } from '../../client/src/index.js';
import { createRedis } from '../../src/store/redis.js';
import { build, mintJwt, testConfig, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

// Issue 15, item 5: the typed client, against a vault listening on a real socket.
const BATCH_MAX = 7;
let t: TestApp;
let url: string;
const sent: Array<{ method: string; path: string; idempotencyKey: string | null; authorization: string | null }> = [];

async function listening(app: TestApp): Promise<string> {
  await app.app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.app.server.address() as AddressInfo).port}`;
}

/** The real fetch, with each request noted on its way out. */
const recordingFetch: typeof fetch = async (input, init) => {
  const headers = new Headers(init?.headers);
  sent.push({ method: init?.method ?? 'GET', path: new URL(String(input)).pathname, idempotencyKey: headers.get('idempotency-key'), authorization: headers.get('authorization') });
  return fetch(input, init);
};

const limit = (max: number, windowMs = 60_000) => ({ max, windowMs });
beforeAll(async () => {
  t = await build({ batchMax: BATCH_MAX, rateLimits: { ...testConfig().rateLimits, admin: limit(2, 1_000) } });
  url = await listening(t);
});
afterAll(async () => {
  await t.close();
});

const everything = 'tokenize detokenize lookup erase admin';
const clientFor = (scope = everything, options: Partial<Parameters<typeof createClient>[0]> = {}, sub = 'sdk'): PhonevaultClient =>
  createClient({ baseUrl: url, token: mintJwt({ tenant: 'client', sub, scope }), batchMax: BATCH_MAX, fetch: recordingFetch, ...options });

describe('@phonevault/client', () => {
  it('covers every operation: tokenize, detokenize, lookup, metadata, erasure, keys, audit, API keys, probes', async () => {
    const vault = clientFor();
    const made = await vault.tokenize({ phone: NUMBERS.us.national, country: 'US' });
    expect(made.token).toMatch(/^tok_/);
    expect(made.country).toBe('US');
    const { results } = await vault.detokenize({ tokens: [made.token] });
    expect(results).toEqual([{ token: made.token, phone: NUMBERS.us.e164, country: 'US' }]);
    const masked = await vault.detokenize({ tokens: [made.token], redaction: 'masked' });
    expect(masked.results[0]).toMatchObject({ token: made.token, masked: expect.not.stringContaining(NUMBERS.us.e164.slice(-7)) });
    expect((await vault.lookup({ phone: NUMBERS.us.e164 })).tokens).toContain(made.token);
    expect(await vault.getToken(made.token)).toMatchObject({ token: made.token, country: 'US' });
    const batch = await vault.tokenizeBatch({ items: [{ phone: NUMBERS.gb.e164 }, { phone: 'not a number' }] });
    expect(batch.results.map((result) => ('token' in result ? 'token' : result.error.code))).toEqual(['token', 'invalid_phone']);
    await vault.deleteToken((batch.results[0] as { token: string }).token);
    expect(await vault.eraseNumber({ phone: NUMBERS.us.e164 })).toEqual({ erased: 1 });

    const keys = await vault.listKeys({ limit: 10 });
    expect(keys.keys[0]).toMatchObject({ version: 1, state: 'active' });
    expect((await vault.rotateKey()).activeVersion).toBe(2);
    await expect(vault.destroyKeyVersion(2)).rejects.toMatchObject({ code: 'invalid_request', status: 400 });
    const audit = await vault.listAuditEvents({ client: 'sdk', limit: 100 });
    expect(audit.events.map((event) => event.action)).toEqual(expect.arrayContaining(['tokenize', 'detokenize', 'detokenize_masked', 'lookup', 'erase_number', 'keys_rotate']));

    const apiKey = await vault.createApiKey({ name: 'sdk-key', scopes: ['tokenize'] });
    const withKey = createClient({ baseUrl: url, token: apiKey.key });
    expect((await withKey.tokenize({ phone: NUMBERS.de.e164 })).token).toMatch(/^tok_/);
    expect((await vault.listApiKeys()).keys.map((key) => key.id)).toContain(apiKey.id);
    await vault.revokeApiKey(apiKey.id);
    expect(await vault.getHealth()).toEqual({ status: 'ok' });
    expect((await vault.getReadiness()).status).toBe('ready');
  });

  it('tokenizeMany and detokenizeMany take any number of items in BATCH_MAX batches, in order, with per-item errors', async () => {
    const vault = clientFor();
    const pool = [NUMBERS.us.e164, NUMBERS.gb.e164, NUMBERS.de.e164, NUMBERS.fr.e164];
    const items = Array.from({ length: 3 * BATCH_MAX + 2 }, (_, i) => ({ phone: i % 5 === 3 ? 'not a number' : pool[i % pool.length]! }));
    sent.length = 0;
    const results = await vault.tokenizeMany(items);
    expect(sent.filter((request) => request.path === '/v1/tokenize/batch')).toHaveLength(4);
    expect(results.map((result) => result.index)).toEqual(items.map((_, i) => i));
    for (const [i, result] of results.entries()) {
      if (i % 5 === 3) expect(result).toMatchObject({ index: i, error: { code: 'invalid_phone' } });
      else expect(result).toMatchObject({ index: i, token: expect.stringMatching(/^tok_/) });
    }
    // Batches carry keys of their own, from one base: the whole call can be retried as it is.
    const keys = sent.map((request) => request.idempotencyKey!);
    expect(new Set(keys).size).toBe(4);
    expect(keys.every((key) => key.startsWith(keys[0]!.slice(0, -2)))).toBe(true);

    const tokens = results.map((result) => ('token' in result ? result.token : 'tok_AAAAAAAAAAAAAAAAAAAAAA'));
    const read = await vault.detokenizeMany(tokens);
    expect(read.map((result) => result.token)).toEqual(tokens);
    for (const [i, result] of read.entries()) {
      if (i % 5 === 3) expect(result).toMatchObject({ error: { code: 'not_found' } });
      else expect(result).toMatchObject({ phone: items[i]!.phone });
    }
    expect(await vault.tokenizeMany([])).toEqual([]);
  });

  it('throws one error class with the code from the spec and the request id, never the input', async () => {
    const vault = clientFor();
    const error = await vault.tokenize({ phone: `${NUMBERS.us.e164}99999` }).catch((caught: unknown) => caught);
    expect(isPhonevaultError(error)).toBe(true);
    const problem = error as PhonevaultError;
    expect(problem).toBeInstanceOf(PhonevaultError);
    expect(problem).toMatchObject({ code: 'invalid_phone', status: 400, attempts: 1 });
    expect(problem.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(problem.message).not.toContain(NUMBERS.us.digits);
    const scoped = await clientFor('tokenize').detokenize({ tokens: ['tok_AAAAAAAAAAAAAAAAAAAAAA'] }).catch((caught: unknown) => caught);
    expect(scoped).toMatchObject({ code: 'insufficient_scope', status: 403 });
    const nobody = await createClient({ baseUrl: url, token: 'not-a-token' }).getToken('tok_AAAAAAAAAAAAAAAAAAAAAA').catch((caught: unknown) => caught);
    expect(nobody).toMatchObject({ code: 'unauthorized', status: 401 });
  });

  it('asks a token provider for a credential on every attempt', async () => {
    let asked = 0;
    const vault = createClient({ baseUrl: url, token: async () => (asked++, mintJwt({ tenant: 'client', sub: `sdk-${asked}`, scope: 'tokenize' })) });
    await vault.tokenize({ phone: NUMBERS.us.e164 });
    await vault.tokenize({ phone: NUMBERS.us.e164 });
    expect(asked).toBe(2);
  });

  it('retries a 429 after the retry-after the vault names, within its budget, with the same Idempotency-Key on writes', async () => {
    // The admin budget: two a second. The third call waits for the window and then goes through.
    const vault = clientFor(everything, { retry: { maxAttempts: 4, budgetMs: 5_000 } }, 'sdk-patient');
    await vault.listKeys();
    await vault.listKeys();
    const started = Date.now();
    sent.length = 0;
    await vault.listKeys();
    expect(sent.length).toBeGreaterThanOrEqual(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);

    // A budget that cannot wait as long as the vault asks: the 429 itself, with how long it asked for.
    const hurried = clientFor(everything, { retry: { maxAttempts: 4, budgetMs: 100 } }, 'sdk-hurried');
    await hurried.listKeys().catch(() => {});
    await hurried.listKeys().catch(() => {});
    const refused = await hurried.listKeys().catch((caught: unknown) => caught);
    expect(refused).toMatchObject({ code: 'rate_limited', status: 429, attempts: 1 });
    expect((refused as PhonevaultError).retryAfterS).toBeGreaterThanOrEqual(1);

    // A write that is throttled, retried, and made once, under one key.
    const writer = await build({ rateLimits: { ...testConfig().rateLimits, tokenize: limit(1, 1_000) } }, t.testDb);
    try {
      const vaultOfWriter = createClient({ baseUrl: await listening(writer), token: mintJwt({ tenant: 'client-w', sub: 'sdk', scope: 'tokenize lookup' }), fetch: recordingFetch });
      await vaultOfWriter.tokenize({ phone: NUMBERS.fr.e164 });
      sent.length = 0;
      const again = await vaultOfWriter.tokenize({ phone: NUMBERS.gb.e164 }, { idempotencyKey: 'order-77' });
      expect(sent.length).toBeGreaterThanOrEqual(2);
      expect(new Set(sent.map((request) => request.idempotencyKey))).toEqual(new Set(['order-77']));
      expect(again.token).toMatch(/^tok_/);
      const rows = await t.testDb.owner.query(`SELECT count(*)::int AS n FROM tokens WHERE tenant_id = 'client-w'`);
      expect(rows.rows[0]).toEqual({ n: 2 });
    } finally {
      await writer.close();
    }
  });

  it('retries a 503 within a bounded number of attempts and gives up with the last answer', async () => {
    // Redis out of reach: detokenize fails closed with 503 at once.
    const redis = createRedis('redis://127.0.0.1:1');
    const closed = await build({}, t.testDb, { redis });
    try {
      const vault = createClient({ baseUrl: await listening(closed), token: mintJwt({ tenant: 'client', sub: 'sdk', scope: everything }), fetch: recordingFetch, retry: { maxAttempts: 3, budgetMs: 10_000 } });
      sent.length = 0;
      const error = await vault.detokenize({ tokens: ['tok_AAAAAAAAAAAAAAAAAAAAAA'] }).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'unavailable', status: 503, attempts: 3 });
      expect((error as PhonevaultError).requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(sent).toHaveLength(3);
    } finally {
      await closed.close();
      redis.disconnect();
    }
  });

  it('times out an attempt that gets no answer, retries a read, and stops at once when its AbortSignal fires', async () => {
    // A server that accepts connections and never answers.
    const silent: Server = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const baseUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const vault = createClient({ baseUrl, token: 'x', timeoutMs: 200, retry: { maxAttempts: 2, baseDelayMs: 10 }, fetch: recordingFetch });
      sent.length = 0;
      const timedOut = await vault.getToken('tok_AAAAAAAAAAAAAAAAAAAAAA').catch((caught: unknown) => caught);
      expect(timedOut).toMatchObject({ code: 'timeout', status: null, attempts: 2 });
      expect(sent).toHaveLength(2);
      // A delete is not sent again once it may have reached the vault.
      sent.length = 0;
      await expect(vault.deleteToken('tok_AAAAAAAAAAAAAAAAAAAAAA')).rejects.toMatchObject({ code: 'timeout', attempts: 1 });
      expect(sent).toHaveLength(1);

      const patient = createClient({ baseUrl, token: 'x', timeoutMs: 60_000 });
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(new Error('the caller gave up')), 100);
      await expect(patient.getToken('tok_AAAAAAAAAAAAAAAAAAAAAA', { signal: controller.signal })).rejects.toThrow('the caller gave up');
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      silent.close();
    }
    // Nothing listening: a network error, retried for a read.
    const gone = createClient({ baseUrl: 'http://127.0.0.1:1', token: 'x', retry: { maxAttempts: 2, baseDelayMs: 10 } });
    await expect(gone.getHealth()).rejects.toMatchObject({ code: 'network_error', attempts: 2 });
  });

  it("runs the README's example as written, through the built package", async () => {
    const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Calling it from a service'));
    const example = /```ts\n([\s\S]*?)```/.exec(section)![1]!;
    const file = join(import.meta.dirname, `readme-example-${randomBytes(4).toString('hex')}.ts`);
    const lines: unknown[][] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void lines.push(args));
    process.env.PHONEVAULT_URL = url;
    process.env.PHONEVAULT_TOKEN = mintJwt({ tenant: 'client', sub: 'readme', scope: 'tokenize detokenize' });
    try {
      writeFileSync(file, example);
      await import(file);
    } finally {
      log.mockRestore();
      rmSync(file, { force: true });
      delete process.env.PHONEVAULT_TOKEN;
    }
    expect(lines).toEqual([[NUMBERS.us.e164], [['token', 'invalid_phone']], ['invalid_phone', 400, true]]);
  });
});
