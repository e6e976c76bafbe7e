import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.js';
import { bearer, type TestApp } from '../helpers/build.js';
import { createVaultDatabase } from '../helpers/vault-database.js';
import { NUMBERS } from '../helpers/numbers.js';

const oldKey = randomBytes(32).toString('base64');
const newKey = randomBytes(32).toString('base64');
let database: Awaited<ReturnType<typeof createVaultDatabase>>;
let db: Db;
let t: TestApp;
const run = (argv: string[], masterKey = oldKey) => database.run(argv, masterKey);

beforeAll(async () => {
  database = await createVaultDatabase(oldKey);
  db = database.db;
  t = await database.app();
});
afterAll(async () => {
  await database.drop();
});

const tokenize = async (phone: string, tenant = 'acme', extra: object = {}) =>
  (await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant, scope: 'tokenize' }), payload: { phone, ...extra } })).json().token as string;
const detokenizeWith = async (app: TestApp, tokens: string[], tenant = 'acme') =>
  (await app.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant, scope: 'detokenize' }), payload: { tokens } })).json().results;

describe('maintenance commands', () => {
  it('rewrap moves tokens to the active version, reporting progress as plain lines off a terminal', async () => {
    const tokens = [await tokenize(NUMBERS.us.e164), await tokenize(NUMBERS.gb.e164), await tokenize(NUMBERS.de.e164)];
    await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: bearer({ scope: 'admin' }) });
    const res = await run(['rewrap', '--tenant', 'acme', '--batch-size', '2']);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/rewrap acme: \d+\/3 tokens moved/);
    expect(res.out).toContain('rewrap done: 3 tokens moved to the active key in 1 tenant(s); 0 remain on older versions or formats; 0 unreadable; 0 misplaced (their fingerprint was moved)');
    expect((await run(['rewrap'])).out).toContain('rewrap done: 0 tokens moved');
    const versions = await db.query<{ key_version: number }>(`SELECT DISTINCT key_version FROM tokens WHERE tenant_id = 'acme'`);
    expect(versions.rows).toEqual([{ key_version: 2 }]);
    expect((await detokenizeWith(t, tokens)).map((r: { phone: string }) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164, NUMBERS.de.e164]);
  });

  it('keys destroy refuses the active version and destroys a drained retired one', async () => {
    const active = await run(['keys', 'destroy', '--tenant', 'acme', '--version', '2']);
    expect(active.code).toBe(1);
    expect(active.err).toContain('the active version cannot be destroyed');
    await db.query(`UPDATE data_keys SET retired_at = now() - interval '1 minute' WHERE tenant_id = 'acme' AND version = 1`);
    const res = await run(['keys', 'destroy', '--tenant', 'acme', '--version', '1']);
    expect(res.code).toBe(0);
    expect(res.out).toContain('destroyed data key version 1 of tenant acme');
    const row = await db.query<{ state: string; wrapped_key: Buffer | null }>(`SELECT state, wrapped_key FROM data_keys WHERE tenant_id = 'acme' AND version = 1`);
    expect(row.rows[0]).toEqual({ state: 'destroyed', wrapped_key: null });
  });

  it('keys rewrap-master moves every data key to the new master key, after which the old one can go', async () => {
    await tokenize(NUMBERS.fr.e164, 'globex');
    const tokens = [await tokenize(NUMBERS.us2.e164)];
    // Without the old key configured, nothing starts: data keys are wrapped by it.
    const refused = await run(['sweep'], `new:${newKey}`);
    expect(refused.code).toBe(78);
    expect(refused.err).toContain('data keys are wrapped by master key "default", which is not configured');

    const res = await run(['keys', 'rewrap-master'], `new:${newKey},default:${oldKey}`);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/re-wrapped \d+ key\(s\)/);
    const kekIds = await db.query<{ kek_id: string }>(
      `SELECT DISTINCT kek_id FROM (SELECT kek_id FROM data_keys WHERE kek_id IS NOT NULL UNION ALL SELECT fingerprint_kek_id FROM tenant_keys) k`,
    );
    expect(kekIds.rows).toEqual([{ kek_id: 'new' }]);
    expect((await run(['sweep'], `new:${newKey}`)).code).toBe(0);
    const rotated = await database.app(`new:${newKey}`);
    expect((await detokenizeWith(rotated, tokens))[0].phone).toBe(NUMBERS.us2.e164);
  });

  it('sweep deletes expired tokens and says how many', async () => {
    await tokenize(NUMBERS.gb.e164, 'acme', { ttlSeconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const res = await run(['sweep'], `new:${newKey}`);
    expect(res.out).toBe('sweep: deleted 1 expired token(s) and 0 expired idempotency key(s)');
  });

  it('tenant destroy asks for --yes, then shreds the keys and rows of one tenant only', async () => {
    // This app still runs on the old master key alone, so both stay configured here.
    const both = `new:${newKey},default:${oldKey}`;
    const doomed = await tokenize(NUMBERS.fr.e164, 'globex');
    const survivor = await tokenize(NUMBERS.fr.e164, 'initech');
    const unconfirmed = await run(['tenant', 'destroy', 'globex'], both);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.out).toContain('--yes');
    const res = await run(['tenant', 'destroy', 'globex', '--yes'], both);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/tenant globex destroyed: 1 data key version\(s\) and its fingerprint key shredded, 2 token\(s\) deleted/);
    expect((await db.query(`SELECT 1 FROM tokens WHERE tenant_id = 'globex'`)).rowCount).toBe(0);
    expect((await db.query(`SELECT 1 FROM data_keys WHERE tenant_id = 'globex'`)).rowCount).toBe(0);
    const fresh = await database.app(both);
    expect((await detokenizeWith(fresh, [doomed], 'globex'))[0]).toEqual({ token: doomed, error: { code: 'not_found' } });
    expect((await detokenizeWith(fresh, [survivor], 'initech'))[0].phone).toBe(NUMBERS.fr.e164);
  });

  // Issue 14, item 11: a typo must not look like a success, nor leave a trace.
  it('tenant destroy of an unknown tenant says so, exits 1 and writes nothing', async () => {
    const both = `new:${newKey},default:${oldKey}`;
    const snapshot = async () =>
      (await db.query<{ t: string }>(`SELECT (SELECT count(*) FROM audit_events) || '/' || (SELECT count(*) FROM audit_heads) || '/' || (SELECT count(*) FROM tenant_keys) AS t`)).rows[0]!.t;
    const before = await snapshot();
    const res = await run(['tenant', 'destroy', 'no-such-tenant', '--yes'], both);
    expect(res.code).toBe(1);
    expect(res.err).toContain('no tenant no-such-tenant in this vault; nothing was destroyed');
    expect(await snapshot()).toBe(before);
  });

  it('tenant destroy of an unknown tenant writes nothing even on a database no vault has opened yet', async () => {
    const fresh = await createVaultDatabase(oldKey);
    try {
      const rows = async () =>
        (await fresh.db.query<{ t: string }>(`SELECT (SELECT count(*) FROM master_key_checks) || '/' || (SELECT count(*) FROM audit_keys) || '/' || (SELECT count(*) FROM audit_events) AS t`)).rows[0]!.t;
      const before = await rows();
      const res = await fresh.run(['tenant', 'destroy', 'ghost', '--yes']);
      expect(res.code).toBe(1);
      expect(await rows()).toBe(before);
    } finally {
      await fresh.drop();
    }
  });
});
