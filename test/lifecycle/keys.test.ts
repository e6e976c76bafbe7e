import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envKekSet, parseMasterKeys } from '../../src/crypto/master-keys.js';
import { openVault } from '../../src/vault/deps.js';
import { rewrap } from '../../src/vault/maintenance.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { NUMBERS } from '../helpers/numbers.js';

const masterKeys = parseMasterKeys(randomBytes(32).toString('base64'));
let testDb: TestDb;
let t: TestApp;
beforeAll(async () => {
  testDb = await createTestDb({ max: 20 });
  t = await build({ masterKeys }, testDb);
});
afterAll(async () => {
  await t.close();
  await testDb.drop();
});

const admin = (tenant = 'acme') => bearer({ tenant, scope: 'admin' });
const writer = (tenant = 'acme') => bearer({ tenant, scope: 'tokenize detokenize' });
const tokenize = async (app: TestApp, phone: string, tenant = 'acme') =>
  (await app.app.inject({ method: 'POST', url: '/v1/tokenize', headers: writer(tenant), payload: { phone } })).json().token as string;
const detokenize = async (app: TestApp, tokens: string[], tenant = 'acme') =>
  (await app.app.inject({ method: 'POST', url: '/v1/detokenize', headers: writer(tenant), payload: { tokens } })).json().results as Array<{ phone?: string; error?: { code: string } }>;
const versionOf = async (token: string) =>
  (await testDb.db.query<{ key_version: number }>('SELECT key_version FROM tokens WHERE token_id = $1', [Buffer.from(token.slice(4), 'base64url')])).rows[0]?.key_version;
const keys = async (tenant = 'acme') => (await t.app.inject({ method: 'GET', url: '/v1/keys', headers: admin(tenant) })).json().keys as Array<Record<string, unknown>>;
const maintenanceDeps = () => openVault({ db: testDb.db, keks: envKekSet(masterKeys), keyMaxEncryptions: 2 ** 31, logger: pino({ level: 'silent' }) });

describe('data key rotation, re-wrap and destruction', () => {
  it('rotates: new writes use the new version at once, old tokens keep decrypting, GET /v1/keys reports it all', async () => {
    const old = await tokenize(t, NUMBERS.us.e164);
    expect(await versionOf(old)).toBe(1);
    const rotated = await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: admin() });
    expect(rotated.statusCode).toBe(200);
    expect(rotated.json()).toEqual({ activeVersion: 2 });
    const fresh = await tokenize(t, NUMBERS.gb.e164);
    expect(await versionOf(fresh)).toBe(2);
    expect((await detokenize(t, [old, fresh])).map((r) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
    const listed = await keys();
    expect(listed).toMatchObject([
      { version: 1, state: 'retired', tokens: 1, destroyedAt: null },
      { version: 2, state: 'active', tokens: 1, retiredAt: null },
    ]);
    expect(listed[0]!.encryptions).toBeGreaterThanOrEqual(1);
    expect(typeof listed[0]!.retiredAt).toBe('string');
  });

  it("keeps key management to admin, and to the caller's own tenant", async () => {
    for (const res of [
      await t.app.inject({ method: 'GET', url: '/v1/keys', headers: writer() }),
      await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: bearer({ scope: 'tokenize detokenize lookup erase' }) }),
    ]) {
      expect(res.statusCode).toBe(403);
      expect(res.json().code).toBe('insufficient_scope');
    }
    expect(await keys('nobody-here')).toEqual([]);
  });

  it('is seen by an instance that did not rotate, within seconds (its encryption lease expires)', async () => {
    const other = await build({ masterKeys }, testDb);
    try {
      const before = await tokenize(other, NUMBERS.de.e164);
      const beforeVersion = await versionOf(before);
      const { activeVersion } = (await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: admin() })).json();
      expect(activeVersion).toBe(beforeVersion! + 1);
      const started = Date.now();
      let seen = beforeVersion;
      while (seen !== activeVersion && Date.now() - started < 8000) {
        seen = await versionOf(await tokenize(other, NUMBERS.de.e164));
        if (seen !== activeVersion) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(seen).toBe(activeVersion);
      expect(Date.now() - started).toBeLessThan(6500);
    } finally {
      await other.app.close();
    }
  });

  it('re-wraps every token onto the active version, then destroys the drained versions for good', async () => {
    const tokens = await Promise.all([NUMBERS.us, NUMBERS.gb, NUMBERS.de, NUMBERS.fr].map((n) => tokenize(t, n.e164)));
    await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: admin() });
    const saved = (await testDb.db.query<{ envelope: Buffer; key_version: number }>('SELECT envelope, key_version FROM tokens WHERE token_id = $1', [Buffer.from(tokens[0]!.slice(4), 'base64url')])).rows[0]!;

    // Not while tokens still use it.
    const early = await t.app.inject({ method: 'POST', url: `/v1/keys/${saved.key_version}/destroy`, headers: admin() });
    expect(early.statusCode).toBe(400);
    expect(early.json().detail).toMatch(/rewrap/);

    const progress: number[] = [];
    const report = await rewrap(await maintenanceDeps(), { tenant: 'acme', batchSize: 2, onProgress: (p) => progress.push(p.moved) });
    expect(report.remaining).toBe(0);
    expect(report.unreadable).toBe(0);
    expect(report.moved).toBeGreaterThanOrEqual(4);
    expect(progress.length).toBeGreaterThan(1);
    const listed = await keys();
    const active = listed.find((k) => k.state === 'active')!;
    expect(listed.filter((k) => k.version !== active.version).every((k) => k.tokens === 0)).toBe(true);
    expect((await detokenize(t, tokens)).map((r) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164, NUMBERS.de.e164, NUMBERS.fr.e164]);

    // Not the active version, and not moments after retirement (another instance may still hold a lease).
    expect((await t.app.inject({ method: 'POST', url: `/v1/keys/${active.version}/destroy`, headers: admin() })).statusCode).toBe(400);
    const recent = await t.app.inject({ method: 'POST', url: `/v1/keys/${Number(active.version) - 1}/destroy`, headers: admin() });
    expect(recent.statusCode).toBe(400);
    expect(recent.json().detail).toMatch(/moments ago/);

    // Time passes (the grace period is 30 s; the test moves the clock of the rows instead of waiting).
    await testDb.db.query(`UPDATE data_keys SET retired_at = now() - interval '1 minute' WHERE tenant_id = 'acme' AND state = 'retired'`);
    for (const version of listed.filter((k) => k.state === 'retired').map((k) => k.version)) {
      expect((await t.app.inject({ method: 'POST', url: `/v1/keys/${version}/destroy`, headers: admin() })).statusCode).toBe(204);
    }
    const after = await keys();
    expect(after.filter((k) => k.state === 'destroyed').length).toBe(listed.filter((k) => k.state === 'retired').length);
    const wrapped = await testDb.db.query(`SELECT 1 FROM data_keys WHERE tenant_id = 'acme' AND state = 'destroyed' AND wrapped_key IS NOT NULL`);
    expect(wrapped.rowCount).toBe(0);
    expect((await t.app.inject({ method: 'POST', url: '/v1/keys/999/destroy', headers: admin() })).statusCode).toBe(404);

    // An envelope from before the re-wrap, put back (a restored backup): its key is gone, so it stays unreadable.
    await testDb.db.query('UPDATE tokens SET envelope = $2, key_version = $3 WHERE token_id = $1', [Buffer.from(tokens[0]!.slice(4), 'base64url'), saved.envelope, saved.key_version]);
    const fresh = await build({ masterKeys }, testDb);
    try {
      expect((await detokenize(fresh, [tokens[0]!]))[0]).toEqual({ token: tokens[0], error: { code: 'not_found' } });
    } finally {
      await fresh.app.close();
    }
  });
});
