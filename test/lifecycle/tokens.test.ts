import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envKekSet, parseMasterKeys } from '../../src/crypto/master-keys.js';
import { openVault } from '../../src/vault/deps.js';
import { sweep } from '../../src/vault/maintenance.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

const masterKeys = parseMasterKeys(randomBytes(32).toString('base64'));
let t: TestApp;
beforeAll(async () => {
  t = await build({ masterKeys });
});
afterAll(async () => {
  await t.close();
});

const all = (tenant = 'acme') => bearer({ tenant, scope: 'tokenize detokenize lookup erase' });
const tokenize = async (payload: object, tenant = 'acme') =>
  (await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: all(tenant), payload })).json().token as string;
const lookup = (payload: object, headers = all()) => t.app.inject({ method: 'POST', url: '/v1/lookup', headers, payload });
const detokenize = async (tokens: string[], tenant = 'acme') =>
  (await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: all(tenant), payload: { tokens } })).json().results;

describe('POST /v1/lookup', () => {
  it("returns the tenant's tokens of a number, whatever its formatting, and never a number", async () => {
    const random = await tokenize({ phone: NUMBERS.gb.e164 });
    const deterministic = await tokenize({ phone: NUMBERS.gb.national, country: 'GB', deterministic: true });
    await tokenize({ phone: NUMBERS.gb.e164 }, 'globex');
    const res = await lookup({ phone: NUMBERS.gb.national, country: 'GB' }, bearer({ scope: 'lookup' }));
    expect(res.statusCode).toBe(200);
    expect(res.json().tokens.sort()).toEqual([random, deterministic].sort());
    expect(res.body).not.toContain(NUMBERS.gb.digits);
  });

  it('answers an empty list for an unknown number or a tenant without keys, and 403 without the scope', async () => {
    expect((await lookup({ phone: NUMBERS.fr.e164 })).json()).toEqual({ tokens: [], next: null });
    expect((await lookup({ phone: NUMBERS.fr.e164 }, bearer({ tenant: 'fresh', scope: 'lookup' }))).json()).toEqual({ tokens: [], next: null });
    const denied = await lookup({ phone: NUMBERS.gb.e164 }, bearer({ scope: 'tokenize detokenize' }));
    expect(denied.statusCode).toBe(403);
    expect(denied.json().code).toBe('insufficient_scope');
    expect((await lookup({ phone: NUMBERS.invalid.e164 })).json().code).toBe('invalid_phone');
  });
});

describe('GET /v1/tokens/{token}', () => {
  it('gives metadata and no number, to detokenize, detokenize:masked or lookup callers', async () => {
    const token = await tokenize({ phone: NUMBERS.us.e164, ttlSeconds: 3600 });
    for (const scope of ['detokenize', 'detokenize:masked', 'lookup']) {
      const res = await t.app.inject({ method: 'GET', url: `/v1/tokens/${token}`, headers: bearer({ scope }) });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ token, country: 'US', lineType: 'fixed_line_or_mobile', deterministic: false, createdAt: expect.any(String), expiresAt: expect.any(String) });
      expect(res.body).not.toContain(NUMBERS.us.digits);
    }
    expect((await t.app.inject({ method: 'GET', url: `/v1/tokens/${token}`, headers: bearer({ scope: 'tokenize erase' }) })).statusCode).toBe(403);
  });

  it("answers not_found for another tenant's token, an unknown token, and 400 for a malformed one", async () => {
    const token = await tokenize({ phone: NUMBERS.us.e164 });
    const foreign = await t.app.inject({ method: 'GET', url: `/v1/tokens/${token}`, headers: bearer({ tenant: 'globex', scope: 'lookup' }) });
    const unknown = await t.app.inject({ method: 'GET', url: `/v1/tokens/tok_${'A'.repeat(22)}`, headers: bearer({ scope: 'lookup' }) });
    expect(foreign.statusCode).toBe(404);
    expect(unknown.statusCode).toBe(404);
    expect(foreign.json().code).toBe('not_found');
    expect(foreign.json().detail).toBe(unknown.json().detail);
    const malformed = await t.app.inject({ method: 'GET', url: `/v1/tokens/${encodeURIComponent(NUMBERS.us.e164)}`, headers: bearer({ scope: 'lookup' }) });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.body).not.toContain(NUMBERS.us.digits);
  });
});

describe('erasure', () => {
  it('DELETE /v1/tokens/{token} deletes one token: 204, then 404', async () => {
    const token = await tokenize({ phone: NUMBERS.de.e164 });
    const headers = bearer({ scope: 'erase' });
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/tokens/${token}`, headers })).statusCode).toBe(204);
    const again = await t.app.inject({ method: 'DELETE', url: `/v1/tokens/${token}`, headers });
    expect(again.statusCode).toBe(404);
    expect(again.json().code).toBe('not_found');
    expect((await detokenize([token]))[0]).toEqual({ token, error: { code: 'not_found' } });
  });

  it("refuses to delete another tenant's token, exactly as if it did not exist", async () => {
    const token = await tokenize({ phone: NUMBERS.de.e164 });
    const res = await t.app.inject({ method: 'DELETE', url: `/v1/tokens/${token}`, headers: bearer({ tenant: 'globex', scope: 'erase' }) });
    expect(res.statusCode).toBe(404);
    expect((await detokenize([token]))[0].phone).toBe(NUMBERS.de.e164);
  });

  it("POST /v1/erase deletes every token of one person's number in the tenant, and nothing else", async () => {
    const mine = [
      await tokenize({ phone: NUMBERS.fr.e164 }),
      await tokenize({ phone: NUMBERS.fr.national, country: 'FR' }),
      await tokenize({ phone: NUMBERS.fr.e164, deterministic: true }),
    ];
    const keep = await tokenize({ phone: NUMBERS.us2.e164 });
    const elsewhere = await tokenize({ phone: NUMBERS.fr.e164 }, 'globex');
    const res = await t.app.inject({ method: 'POST', url: '/v1/erase', headers: bearer({ scope: 'erase' }), payload: { phone: NUMBERS.fr.national, country: 'FR' } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ erased: 3 });
    expect((await detokenize(mine)).every((r: { error?: { code: string } }) => r.error?.code === 'not_found')).toBe(true);
    expect((await detokenize([keep]))[0].phone).toBe(NUMBERS.us2.e164);
    expect((await detokenize([elsewhere], 'globex'))[0].phone).toBe(NUMBERS.fr.e164);
    expect((await t.app.inject({ method: 'POST', url: '/v1/erase', headers: bearer({ scope: 'erase' }), payload: { phone: NUMBERS.fr.e164 } })).json()).toEqual({ erased: 0 });
    expect((await t.app.inject({ method: 'POST', url: '/v1/erase', headers: bearer({ scope: 'lookup' }), payload: { phone: NUMBERS.fr.e164 } })).statusCode).toBe(403);
  });
});

describe('expiry', () => {
  it('an expired token is not_found at once, and the sweep deletes only expired rows', async () => {
    const short = await tokenize({ phone: NUMBERS.us.e164, ttlSeconds: 1 });
    const long = await tokenize({ phone: NUMBERS.us.e164, ttlSeconds: 3600 });
    const forever = await tokenize({ phone: NUMBERS.us.e164 });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await detokenize([short]))[0]).toEqual({ token: short, error: { code: 'not_found' } });
    expect((await t.app.inject({ method: 'GET', url: `/v1/tokens/${short}`, headers: bearer({ scope: 'lookup' }) })).statusCode).toBe(404);
    expect((await lookup({ phone: NUMBERS.us.e164 })).json().tokens).not.toContain(short);

    const deps = await openVault({ db: t.testDb.db, keks: envKekSet(masterKeys), keyMaxEncryptions: 2 ** 31, logger: pino({ level: 'silent' }) });
    expect((await sweep(deps, 1)).tokens).toBeGreaterThanOrEqual(1);
    const left = await t.testDb.db.query<{ token_id: Buffer }>('SELECT token_id FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= now()');
    expect(left.rowCount).toBe(0);
    expect((await detokenize([long, forever])).map((r: { phone: string }) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.us.e164]);
  });
});
