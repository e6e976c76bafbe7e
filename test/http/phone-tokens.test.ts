import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

const PHONE_SHAPED = /^\+28[0-9]{13}$/;
const OPAQUE = /^tok_[A-Za-z0-9_-]{22}$/;

let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const call = (tenant: string, scope: string, method: 'POST' | 'GET' | 'DELETE', url: string, payload?: Record<string, unknown>) =>
  t.app.inject({ method, url, headers: bearer({ tenant, scope }), ...(payload === undefined ? {} : { payload }) });
const tokenize = (tenant: string, body: Record<string, unknown>) => call(tenant, 'tokenize', 'POST', '/v1/tokenize', body);
const detokenize = (tenant: string, tokens: string[], scope = 'detokenize') => call(tenant, scope, 'POST', '/v1/detokenize', { tokens });
const path = (token: string) => `/v1/tokens/${encodeURIComponent(token)}`;

describe('phone-shaped tokens', () => {
  it('are made on request, single and batch, and read back like opaque tokens: detokenize, masked, metadata, lookup', async () => {
    const one = await tokenize('acme', { phone: NUMBERS.us.national, country: 'US', format: 'phone' });
    expect(one.statusCode).toBe(201);
    const token = one.json().token as string;
    expect(token).toMatch(PHONE_SHAPED);
    // Nothing of the number is in it: it is drawn, not derived.
    expect(token.slice(3)).not.toContain(NUMBERS.us.digits.slice(-4));
    expect((await detokenize('acme', [token])).json().results[0]).toMatchObject({ token, phone: NUMBERS.us.e164 });
    expect((await detokenize('acme', [token], 'detokenize:masked')).json().results[0].phone).not.toBe(NUMBERS.us.e164);

    const metadata = await call('acme', 'lookup', 'GET', path(token));
    expect(metadata.statusCode).toBe(200);
    expect(metadata.json()).toMatchObject({ token, country: 'US', deterministic: false });
    // A raw `+` in a path is a plus, not a space (RFC 3986): both spellings reach the token.
    expect((await call('acme', 'lookup', 'GET', `/v1/tokens/${token}`)).json().token).toBe(token);

    const batch = await call('acme', 'tokenize', 'POST', '/v1/tokenize/batch', {
      format: 'phone',
      items: Array.from({ length: 300 }, (_, i) => ({ phone: `+1201555${1000 + i}` })),
    });
    expect(batch.statusCode).toBe(200);
    const tokens = batch.json().results.map((r: { token: string }) => r.token) as string[];
    expect(tokens.every((tok) => PHONE_SHAPED.test(tok))).toBe(true);
    expect(new Set(tokens).size).toBe(300);
    const read = (await detokenize('acme', tokens)).json().results as Array<{ token: string; phone: string }>;
    expect(read.map((r) => r.phone)).toEqual(Array.from({ length: 300 }, (_, i) => `+1201555${1000 + i}`));

    const looked = await call('acme', 'lookup', 'POST', '/v1/lookup', { phone: NUMBERS.us.e164 });
    expect(looked.json().tokens).toEqual([token]);
  });

  it('are deterministic on request: one phone-shaped token per number, beside its one opaque deterministic token', async () => {
    const first = await tokenize('acme', { phone: NUMBERS.gb.e164, deterministic: true, format: 'phone' });
    const again = await tokenize('acme', { phone: NUMBERS.gb.national, country: 'GB', deterministic: true, format: 'phone' });
    const opaque = await tokenize('acme', { phone: NUMBERS.gb.e164, deterministic: true });
    expect(first.json().token).toMatch(PHONE_SHAPED);
    expect(again.json().token).toBe(first.json().token);
    expect(opaque.json().token).toMatch(OPAQUE);
    expect((await tokenize('acme', { phone: NUMBERS.gb.e164, deterministic: true })).json().token).toBe(opaque.json().token);
    // Racing writers of one number get one token of each shape.
    const raced = await Promise.all(
      Array.from({ length: 12 }, (_, i) => tokenize('acme', { phone: NUMBERS.de.e164, deterministic: true, format: i % 2 ? 'phone' : 'opaque' })),
    );
    const shapes = new Map<boolean, Set<string>>();
    for (const res of raced) {
      const tok = res.json().token as string;
      shapes.set(PHONE_SHAPED.test(tok), (shapes.get(PHONE_SHAPED.test(tok)) ?? new Set()).add(tok));
    }
    expect([...shapes.values()].map((set) => set.size)).toEqual([1, 1]);
    // Batches deduplicate the same way, and the same number in another tenant gets another token.
    const batch = await call('acme', 'tokenize', 'POST', '/v1/tokenize/batch', {
      deterministic: true,
      format: 'phone',
      items: [{ phone: NUMBERS.gb.e164 }, { phone: NUMBERS.gb.national, country: 'GB' }],
    });
    expect(batch.json().results.map((r: { token: string }) => r.token)).toEqual([first.json().token, first.json().token]);
    const other = await tokenize('globex', { phone: NUMBERS.gb.e164, deterministic: true, format: 'phone' });
    expect(other.json().token).not.toBe(first.json().token);
    expect((await call('acme', 'lookup', 'GET', path(first.json().token))).json().deterministic).toBe(true);
  });

  it("are another tenant's like a token that does not exist, and erase by token and by number removes them", async () => {
    const token = (await tokenize('acme', { phone: NUMBERS.fr.e164, format: 'phone' })).json().token as string;
    const opaque = (await tokenize('acme', { phone: NUMBERS.fr.e164 })).json().token as string;
    expect((await detokenize('globex', [token])).json().results[0]).toEqual({ token, error: { code: 'not_found' } });
    expect((await call('globex', 'lookup', 'GET', path(token))).statusCode).toBe(404);
    expect((await call('globex', 'erase', 'DELETE', path(token))).statusCode).toBe(404);

    expect((await call('acme', 'erase', 'DELETE', path(token))).statusCode).toBe(204);
    expect((await detokenize('acme', [token])).json().results[0].error.code).toBe('not_found');
    const second = (await tokenize('acme', { phone: NUMBERS.fr.e164, format: 'phone' })).json().token as string;
    const erased = await call('acme', 'erase', 'POST', '/v1/erase', { phone: NUMBERS.fr.e164 });
    expect(erased.json().erased).toBe(2);
    expect((await detokenize('acme', [second, opaque])).json().results.map((r: { error?: { code: string } }) => r.error?.code)).toEqual(['not_found', 'not_found']);
  });

  it('refuse as input what is not one: a real number, look-alikes, and a token to tokenize', async () => {
    const token = (await tokenize('acme', { phone: NUMBERS.us.e164, format: 'phone' })).json().token as string;
    for (const bad of [NUMBERS.us.e164, token.slice(0, -1), `${token}1`, token.replace('+28', '+29'), token.slice(1), ` ${token}`]) {
      const res = await detokenize('acme', [bad]);
      expect(res.statusCode).toBe(400);
      expect(res.body).not.toContain(bad.trim());
    }
    // In a path too (metadata, erase), spelled raw or encoded: refused, and not echoed.
    for (const bad of [NUMBERS.us.e164, `${token}1`, token.replace('+28', '+29')]) {
      for (const url of [`/v1/tokens/${bad}`, path(bad)]) {
        for (const [scope, method] of [['lookup', 'GET'], ['erase', 'DELETE']] as const) {
          const res = await call('acme', scope, method, url);
          expect(res.statusCode).toBeGreaterThanOrEqual(400);
          expect(res.statusCode).toBeLessThan(500);
          expect(res.body).not.toContain(bad.slice(1));
        }
      }
    }
    // A token is no number: tokenizing one is refused, so a token is never taken for the number it stands for.
    const again = await tokenize('acme', { phone: token });
    expect(again.statusCode).toBe(400);
    expect(again.json().code).toBe('invalid_phone');
    for (const format of ['PHONE', 'e164', '', 1, null]) {
      const res = await tokenize('acme', { phone: NUMBERS.us.e164, format });
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('invalid_request');
    }
  });

  it('page through lookup with either shape as the cursor', async () => {
    const made = [];
    for (let i = 0; i < 7; i++) made.push((await tokenize('paging', { phone: NUMBERS.us2.e164, format: i % 2 ? 'phone' : 'opaque' })).json().token as string);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = (await call('paging', 'lookup', 'POST', '/v1/lookup', { phone: NUMBERS.us2.e164, limit: 2, ...(cursor ? { cursor } : {}) })).json();
      seen.push(...page.tokens);
      cursor = page.next ?? undefined;
    } while (cursor);
    expect(seen.sort()).toEqual(made.sort());
  });

  it('are stored with their shape, and no row says otherwise', async () => {
    const rows = await t.testDb.owner.query<{ token: string; phone_shaped: boolean }>("SELECT encode(token_id, 'escape') AS token, phone_shaped FROM tokens");
    expect(rows.rows.filter((row) => row.phone_shaped).length).toBeGreaterThan(300);
    for (const row of rows.rows) expect(PHONE_SHAPED.test(row.token)).toBe(row.phone_shaped);
  });
});
