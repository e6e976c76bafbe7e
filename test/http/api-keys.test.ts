import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

// Issue 15, item 7: API keys, for services that cannot mint JWTs.
let t: TestApp;
let other: TestApp;
beforeAll(async () => {
  t = await build({ rateLimits: { ...(await import('../helpers/build.js')).testConfig().rateLimits, perClient: { 'keys/throttled': { classes: { tokenize: { max: 2, windowMs: 60_000 } } } } } as never });
  // A second instance on the same database: revocation must reach it too.
  other = await build({}, t.testDb);
});
afterAll(async () => {
  await other.close();
  await t.close();
});

const admin = (scope = 'admin tokenize detokenize detokenize:masked lookup erase', tenant = 'keys') => bearer({ tenant, sub: 'ops', scope });
const create = async (body: object, headers = admin()) => t.app.inject({ method: 'POST', url: '/v1/api-keys', headers, payload: body });
const newKey = async (body: object = {}, headers = admin()) => {
  const made = await create({ name: 'crm-sync', scopes: ['tokenize', 'detokenize:masked'], ...body }, headers);
  expect(made.statusCode, made.body).toBe(201);
  return made.json() as { id: string; key: string; name: string; scopes: string[]; revokedAt: string | null };
};
const withKey = (key: string) => ({ authorization: `Bearer ${key}` });
const tokenize = (app: TestApp, key: string, phone = NUMBERS.us.e164) => app.app.inject({ method: 'POST', url: '/v1/tokenize', headers: withKey(key), payload: { phone } });

describe('API keys', () => {
  it('are made once by an admin, stored only as a keyed hash, and call the vault as their name', async () => {
    const made = await newKey();
    expect(made.key).toMatch(/^pvk_[0-9A-Za-z]{60}$/);
    const row = (await t.testDb.owner.query('SELECT * FROM api_keys WHERE id = $1', [made.id])).rows[0]!;
    expect(row).toMatchObject({ tenant_id: 'keys', name: 'crm-sync', scopes: ['tokenize', 'detokenize:masked'], created_by: 'ops', revoked_at: null });
    const stored = JSON.stringify(row);
    expect(stored).not.toContain(made.key.slice(4, 40));
    expect((row.key_hash as Buffer).length).toBe(32);

    const token = await tokenize(t, made.key);
    expect(token.statusCode).toBe(201);
    const masked = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: withKey(made.key), payload: { tokens: [token.json().token] } });
    expect(masked.statusCode, masked.body).toBe(200);
    expect(masked.json().results[0].masked).toMatch(/•|\*/);
    expect(masked.body).not.toContain(NUMBERS.us.e164);
    // A scope it was not given: 403, as for a JWT.
    const full = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: withKey(made.key), payload: { tokens: [token.json().token], redaction: 'plain' } });
    expect(full.statusCode).toBe(403);
    expect(full.json().code).toBe('insufficient_scope');

    // (Refusals such as the 403 are counted into rows of their own per minute, written later.)
    const events = await t.testDb.owner.query<{ client: string; action: string; outcome: string }>(
      `SELECT client, action, outcome FROM audit_events WHERE tenant_id = 'keys' ORDER BY seq`,
    );
    expect(events.rows).toEqual(
      expect.arrayContaining([
        { client: 'ops', action: 'apikey_create', outcome: 'ok' },
        { client: 'crm-sync', action: 'tokenize', outcome: 'ok' },
        { client: 'crm-sync', action: 'detokenize_masked', outcome: 'ok' },
      ]),
    );
  });

  it('give no more than their maker holds, and refuse bad requests with 400 and writing nothing', async () => {
    const before = Number((await t.testDb.owner.query('SELECT count(*) AS n FROM api_keys')).rows[0]!.n);
    const adminOnly = await create({ name: 'escalate', scopes: ['detokenize'] }, admin('admin'));
    expect(adminOnly.statusCode).toBe(403);
    expect(adminOnly.json().code).toBe('insufficient_scope');
    const notAdmin = await create({ name: 'x', scopes: ['tokenize'] }, admin('tokenize detokenize'));
    expect(notAdmin.statusCode).toBe(403);
    for (const body of [
      { name: 'user-4155550123', scopes: ['tokenize'] },
      { name: 'bad name', scopes: ['tokenize'] },
      { name: 'a\u0000b', scopes: ['tokenize'] },
      { name: '', scopes: ['tokenize'] },
      { name: 'x'.repeat(129), scopes: ['tokenize'] },
      { name: 'x', scopes: [] },
      { name: 'x', scopes: ['root'] },
      { name: 'x', scopes: 'tokenize' },
      { name: 'x', scopes: ['tokenize'], expiresAt: '2001-01-01T00:00:00Z' },
      { name: 'x', scopes: ['tokenize'], expiresAt: 'tomorrow' },
      { name: 'x', scopes: ['tokenize'], tenant: 'other' },
    ]) {
      const answer = await create(body);
      expect(answer.statusCode, JSON.stringify(body)).toBe(400);
      expect(answer.json().code).toBe('invalid_request');
      expect(answer.body).not.toContain('4155550123');
    }
    expect(Number((await t.testDb.owner.query('SELECT count(*) AS n FROM api_keys')).rows[0]!.n)).toBe(before);
  });

  it("are their tenant's only: another tenant's tokens, keys and revocations are out of reach", async () => {
    const ours = await newKey({ name: 'tenant-a', scopes: ['tokenize', 'detokenize'] });
    const theirs = await newKey({ name: 'tenant-b', scopes: ['tokenize', 'detokenize'] }, admin(undefined, 'keys-other'));
    const theirToken = (await tokenize(t, theirs.key)).json().token as string;
    const reach = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: withKey(ours.key), payload: { tokens: [theirToken] } });
    expect(reach.statusCode).toBe(200);
    expect(reach.json().results).toEqual([{ token: theirToken, error: { code: 'not_found' } }]);
    const listed = await t.app.inject({ method: 'GET', url: '/v1/api-keys?limit=1000', headers: admin() });
    expect(listed.statusCode).toBe(200);
    const ids = (listed.json().keys as Array<{ id: string }>).map((key) => key.id);
    expect(ids).toContain(ours.id);
    expect(ids).not.toContain(theirs.id);
    expect(listed.body).not.toContain('pvk_');
    const revokeTheirs = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${theirs.id}`, headers: admin() });
    expect(revokeTheirs.statusCode).toBe(404);
    expect((await tokenize(t, theirs.key)).statusCode).toBe(201);
  });

  it('once revoked, are refused by every instance within 5 seconds; once expired, at once', async () => {
    const made = await newKey();
    expect((await tokenize(other, made.key)).statusCode).toBe(201);
    expect((await tokenize(t, made.key)).statusCode).toBe(201);
    const revoked = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${made.id}`, headers: admin() });
    expect(revoked.statusCode).toBe(204);
    const at = Date.now();
    for (const app of [other, t]) {
      let status = 0;
      while ((status = (await tokenize(app, made.key)).statusCode) === 201) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(status).toBe(401);
    }
    expect(Date.now() - at).toBeLessThan(5_000);
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${made.id}`, headers: admin() })).statusCode).toBe(404);

    const brief = await newKey({ expiresAt: new Date(Date.now() + 1_500).toISOString() });
    expect((await tokenize(t, brief.key)).statusCode).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    const expired = await tokenize(t, brief.key);
    expect(expired.statusCode).toBe(401);
    expect(expired.headers['www-authenticate']).toContain('invalid_token');
  });

  it('are refused in every other spelling: a changed character, another prefix, a stray space, another secret under the id', async () => {
    const made = await newKey();
    const flip = (text: string, at: number) => text.slice(0, at) + (text[at] === 'a' ? 'b' : 'a') + text.slice(at + 1);
    const { formatApiKey, generateApiKey } = await import('../../src/crypto/api-key.js');
    const forged = generateApiKey().text;
    // The real key's public id with another secret, its checksum right: only the stored hash can tell.
    const sameId = formatApiKey({ id: made.id, secret: randomBytes(32) });
    expect(sameId).toMatch(/^pvk_[0-9A-Za-z]{60}$/);
    for (const credential of [flip(made.key, 10), flip(made.key, 63), made.key.replace('pvk_', 'PVK_'), `${made.key} `, made.key.slice(0, -1), forged, sameId, 'pvk_', `${made.key}.x.y`]) {
      const answer = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${credential}` }, payload: { phone: NUMBERS.us.e164 } });
      expect(answer.statusCode, credential).toBe(401);
      expect(answer.json().code).toBe('unauthorized');
    }
    // The scheme's case is free, as for a JWT.
    expect((await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `bearer ${made.key}` }, payload: { phone: NUMBERS.us.e164 } })).statusCode).toBe(201);
  });

  it('are throttled on their own budget, and note their last use once, not once a request', async () => {
    const made = await newKey({ name: 'throttled' });
    expect((await tokenize(t, made.key)).statusCode).toBe(201);
    const first = (await t.testDb.owner.query('SELECT last_used_at FROM api_keys WHERE id = $1', [made.id])).rows[0]!.last_used_at as Date | null;
    expect((await tokenize(t, made.key)).statusCode).toBe(201);
    const spent = await tokenize(t, made.key);
    expect(spent.statusCode).toBe(429);
    expect(spent.headers['retry-after']).toBeDefined();
    // Another key of the tenant keeps its own budget.
    expect((await tokenize(t, (await newKey({ name: 'unthrottled' })).key)).statusCode).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const later = (await t.testDb.owner.query('SELECT last_used_at FROM api_keys WHERE id = $1', [made.id])).rows[0]!.last_used_at as Date | null;
    expect(later).not.toBeNull();
    if (first) expect(later!.getTime()).toBe(first.getTime());
  });

  it('are paged', async () => {
    for (let i = 0; i < 3; i++) await newKey({ name: `paged-${i}` }, admin(undefined, 'keys-paged'));
    const seen: string[] = [];
    let after = '';
    for (let page = 0; page < 5; page++) {
      const answer = await t.app.inject({ method: 'GET', url: `/v1/api-keys?limit=2${after ? `&after=${after}` : ''}`, headers: admin(undefined, 'keys-paged') });
      expect(answer.statusCode).toBe(200);
      const body = answer.json() as { keys: Array<{ id: string }>; next: string | null };
      seen.push(...body.keys.map((key) => key.id));
      if (!body.next) break;
      after = body.next;
    }
    expect(seen).toHaveLength(3);
    expect(new Set(seen).size).toBe(3);
  });
});

describe('API_KEYS=off', () => {
  it('refuses keys and serves no key routes', async () => {
    const made = await newKey();
    const off = await build({ apiKeys: false }, t.testDb);
    try {
      const refused = await off.app.inject({ method: 'POST', url: '/v1/tokenize', headers: withKey(made.key), payload: { phone: NUMBERS.us.e164 } });
      expect(refused.statusCode).toBe(401);
      // Past the spec check (the document has the routes; this app does not): the callback form of inject.
      const status = await new Promise<number>((resolve, reject) =>
        off.app.inject({ method: 'GET', url: '/v1/api-keys', headers: admin() }, (error, answer) => (error ? reject(error) : resolve(answer!.statusCode))),
      );
      expect(status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
