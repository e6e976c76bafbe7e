import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
beforeAll(async () => {
  // On a worker thread, as the vault runs in production: large batches are parsed, sealed and opened there.
  t = await build({ offloadThreads: 1 });
});
afterAll(async () => {
  await t.close();
});

const tokenize = (payload: unknown, headers = bearer()) => t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: payload as object });
const batch = (payload: unknown, headers = bearer()) => t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers, payload: payload as object });
const detokenize = (tokens: string[], headers = bearer()) => t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens } });

async function countRows(): Promise<number> {
  const result = await t.testDb.db.query<{ n: string }>('SELECT count(*) AS n FROM tokens');
  return Number(result.rows[0]!.n);
}

describe('POST /v1/tokenize', () => {
  it('answers 201 with an opaque token and the metadata, and stores only ciphertext', async () => {
    const res = await tokenize({ phone: NUMBERS.us.national, country: 'US' });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body).toEqual({ token: expect.stringMatching(/^tok_[A-Za-z0-9_-]{22}$/), country: 'US', lineType: 'fixed_line_or_mobile', deterministic: false, expiresAt: null });
    const row = await t.testDb.db.query<{ envelope: Buffer; fingerprint: Buffer }>('SELECT envelope, fingerprint FROM tokens WHERE token_id = $1', [
      Buffer.from(body.token.slice(4), 'base64url'),
    ]);
    expect(row.rows).toHaveLength(1);
    const stored = Buffer.concat([row.rows[0]!.envelope, row.rows[0]!.fingerprint]);
    for (const spelling of [NUMBERS.us.e164, NUMBERS.us.digits]) expect(stored.includes(Buffer.from(spelling))).toBe(false);
  });

  it('gives a new random token on every call by default', async () => {
    const a = (await tokenize({ phone: NUMBERS.gb.e164 })).json().token;
    const b = (await tokenize({ phone: NUMBERS.gb.e164 })).json().token;
    expect(a).not.toBe(b);
  });

  it('gives one deterministic token per number, whatever its formatting', async () => {
    const spellings = [NUMBERS.de.e164, NUMBERS.de.national, '+49 1512 3456789', '0049 1512 3456789'];
    const tokens = new Set<string>();
    for (const phone of spellings) {
      const res = await tokenize({ phone, country: 'DE', deterministic: true });
      expect(res.statusCode).toBe(201);
      expect(res.json().deterministic).toBe(true);
      tokens.add(res.json().token);
    }
    expect(tokens.size).toBe(1);
    expect((await detokenize([...tokens])).json().results[0].phone).toBe(NUMBERS.de.e164);
  });

  it('sets expiresAt from ttlSeconds, and an expired token is not found', async () => {
    const res = await tokenize({ phone: NUMBERS.fr.e164, ttlSeconds: 1 });
    expect(res.statusCode).toBe(201);
    const { token, expiresAt } = res.json();
    expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(1000);
    expect((await detokenize([token])).json().results[0].phone).toBe(NUMBERS.fr.e164);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await detokenize([token])).json().results[0]).toEqual({ token, error: { code: 'not_found' } });
  });

  it('refuses ttlSeconds with deterministic', async () => {
    const res = await tokenize({ phone: NUMBERS.us.e164, deterministic: true, ttlSeconds: 60 });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('invalid_request');
  });

  it('answers invalid_phone for a number that is not valid, without repeating it and without a row', async () => {
    const before = await countRows();
    const res = await tokenize({ phone: NUMBERS.invalid.national, country: 'US' });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 400, code: 'invalid_phone' });
    expect(res.body).not.toContain(NUMBERS.invalid.digits.slice(3));
    expect(await countRows()).toBe(before);
  });

  it('answers invalid_country for an unknown default region', async () => {
    const res = await tokenize({ phone: NUMBERS.us.digits, country: 'XX' });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('invalid_country');
  });
});

describe('POST /v1/tokenize/batch', () => {
  it('answers per item, in order, storing every valid item', async () => {
    const before = await countRows();
    const res = await batch({
      items: [{ phone: NUMBERS.us.e164 }, { phone: NUMBERS.invalid.e164 }, { phone: NUMBERS.gb.national, country: 'GB' }, { phone: 'hello' }],
    });
    expect(res.statusCode).toBe(200);
    const { results } = res.json();
    expect(results.map((r: { index: number }) => r.index)).toEqual([0, 1, 2, 3]);
    expect(results[0]).toMatchObject({ token: expect.stringMatching(/^tok_/), country: 'US' });
    expect(results[1]).toEqual({ index: 1, error: { code: 'invalid_phone', detail: 'not a valid phone number' } });
    expect(results[2]).toMatchObject({ country: 'GB', lineType: 'mobile' });
    expect(results[3].error.code).toBe('invalid_phone');
    expect(res.body).not.toContain(NUMBERS.invalid.digits);
    expect(await countRows()).toBe(before + 2);
    const back = (await detokenize([results[0].token, results[2].token])).json().results;
    expect(back.map((r: { phone: string }) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
  });

  it('deduplicates a deterministic batch: one number, one token', async () => {
    const res = await batch({ items: [{ phone: NUMBERS.us2.e164 }, { phone: NUMBERS.us2.national, country: 'US' }], deterministic: true });
    const [a, b] = res.json().results;
    expect(a.token).toBe(b.token);
    const again = await tokenize({ phone: NUMBERS.us2.digits, country: 'US', deterministic: true });
    expect(again.json().token).toBe(a.token);
  });

  it('refuses an empty batch and one over BATCH_MAX with invalid_request, storing nothing', async () => {
    const before = await countRows();
    for (const items of [[], Array.from({ length: 1001 }, () => ({ phone: NUMBERS.us.e164 }))]) {
      const res = await batch({ items });
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('invalid_request');
    }
    expect(await countRows()).toBe(before);
  });

  it('stores a full batch of 1000 in one go', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({ phone: `+1201555${String(1000 + i).padStart(4, '0')}` }));
    const res = await batch({ items });
    expect(res.statusCode).toBe(200);
    const results = res.json().results as Array<{ token?: string }>;
    expect(results.filter((r) => r.token)).toHaveLength(1000);
    const back = (await detokenize(results.map((r) => r.token!))).json().results as Array<{ phone: string }>;
    expect(back.map((r) => r.phone)).toEqual(items.map((i) => i.phone));
  });
});
