import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { envKekSet, parseMasterKeys } from '../../src/crypto/master-keys.js';
import { createAuditLog } from '../../src/store/audit-log.js';
import { createKeysRepository } from '../../src/store/keys-repository.js';
import { cliCaller, eventOf } from '../../src/vault/caller.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let testDb: TestDb;
const masterKeys = envKekSet(parseMasterKeys(randomBytes(32).toString('base64')));
beforeAll(async () => {
  testDb = await createTestDb({ max: 20 });
});
afterAll(async () => {
  await testDb.drop();
});

const keyring = (maxEncryptions = 2 ** 31, leaseMaxAgeMs?: number) =>
  new Keyring(masterKeys, createKeysRepository(testDb.db, createAuditLog(testDb.db, { key: Buffer.alloc(32, 1) })), { maxEncryptions, ...(leaseMaxAgeMs ? { leaseMaxAgeMs } : {}) });
const rotation = (tenant: string) => eventOf(cliCaller(tenant), 'keys_rotate', 0);

async function dataKeys(tenant: string) {
  const result = await testDb.db.query<{ version: number; state: string; encryptions: string }>(
    'SELECT version, state, encryptions FROM data_keys WHERE tenant_id = $1 ORDER BY version',
    [tenant],
  );
  return result.rows.map((row) => ({ ...row, encryptions: Number(row.encryptions) }));
}

describe('keyring over Postgres', () => {
  it('creates a tenant key exactly once when many instances write first at the same moment', async () => {
    const instances = Array.from({ length: 8 }, () => keyring());
    const keys = await Promise.all(instances.flatMap((k) => [k.forWriting('race', 1), k.forWriting('race', 1)]));
    expect(new Set(keys.map((k) => k.key.toString('hex'))).size).toBe(1);
    expect(new Set(keys.map((k) => k.fingerprintKey.toString('hex'))).size).toBe(1);
    expect(await dataKeys('race')).toEqual([{ version: 1, state: 'active', encryptions: expect.any(Number) }]);
  });

  it('counts at least every encryption it hands out, across instances', async () => {
    const a = keyring();
    const b = keyring();
    let used = 0;
    for (let i = 0; i < 50; i++) {
      await a.forWriting('counted', 3);
      await b.forWriting('counted', 7);
      used += 10;
    }
    const [key] = await dataKeys('counted');
    expect(key!.encryptions).toBeGreaterThanOrEqual(used);
    // Leases are bounded, so the counter never runs far ahead of real use.
    expect(key!.encryptions).toBeLessThanOrEqual(used + 2 * 4096);
  });

  // Random-IV GCM must not exceed its budget per key: with a budget of 10, the 11th encryption uses a new key.
  it('rotates by itself when the encryption budget is spent, and old versions still unwrap', async () => {
    const k = keyring(10);
    const first = await k.forWriting('budget', 6);
    const second = await k.forWriting('budget', 4);
    expect(second.version).toBe(first.version);
    const third = await k.forWriting('budget', 1);
    expect(third.version).toBe(first.version + 1);
    expect(third.key.equals(first.key)).toBe(false);
    expect(third.fingerprintKey.equals(first.fingerprintKey)).toBe(true);
    const keys = await dataKeys('budget');
    expect(keys.map((key) => [key.version, key.state])).toEqual([[1, 'retired'], [2, 'active']]);
    expect(keys.every((key) => key.encryptions <= 10)).toBe(true);
    const reader = await keyring(10).forReading('budget');
    expect((await reader!.dataKey(1))!.equals(first.key)).toBe(true);
    expect((await reader!.dataKey(2))!.equals(third.key)).toBe(true);
  });

  it('refuses a batch larger than the whole budget', async () => {
    await expect(keyring(10).forWriting('too-big', 11)).rejects.toThrow(/more encryptions/);
    expect(await dataKeys('too-big')).toEqual([]);
  });

  it('sees a rotation made by another instance once its lease runs out', async () => {
    const writer = keyring(2 ** 31, 50);
    const other = keyring();
    const before = await writer.forWriting('rotated', 1);
    const version = await other.rotate('rotated', rotation('rotated'), 0);
    expect(version).toBe(before.version + 1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect((await writer.forWriting('rotated', 1)).version).toBe(version);
  });

  it('answers null for reading a tenant that has no keys, and never creates them', async () => {
    expect(await keyring().forReading('nobody')).toBeNull();
    expect(await dataKeys('nobody')).toEqual([]);
  });

  it('rotates on request at most once per minimum interval, and records each rotation with it', async () => {
    const k = keyring();
    await k.forWriting('paced', 1);
    expect(await k.rotate('paced', rotation('paced'), 0)).toBe(2);
    await expect(k.rotate('paced', rotation('paced'), 60_000)).rejects.toMatchObject({ code: 'rate_limited' });
    expect((await dataKeys('paced')).map((key) => [key.version, key.state])).toEqual([[1, 'retired'], [2, 'active']]);
    const recorded = await testDb.owner.query<{ action: string }>(`SELECT action FROM audit_events WHERE tenant_id = 'paced' ORDER BY seq`);
    expect(recorded.rows.map((row) => row.action)).toEqual(['keys_create', 'keys_rotate']);
  });

  it("gives a tenant without keys its first ones when asked to rotate, as fresh as a rotation's, with the caller's event", async () => {
    expect(await keyring().rotate('fresh', rotation('fresh'), 60_000)).toBe(1);
    expect((await dataKeys('fresh')).map((key) => [key.version, key.state])).toEqual([[1, 'active']]);
    const recorded = await testDb.owner.query<{ action: string; client: string }>(`SELECT action, client FROM audit_events WHERE tenant_id = 'fresh' ORDER BY seq`);
    expect(recorded.rows).toEqual([{ action: 'keys_rotate', client: rotation('fresh').client }]);
  });

  // No audit, no state change: a rotation whose event cannot be committed leaves the old version active.
  it('does not rotate when the rotation cannot be recorded', async () => {
    const k = keyring();
    await k.forWriting('unrecorded', 1);
    await testDb.owner.query(`CREATE OR REPLACE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      IF NEW.tenant_id = 'unrecorded' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$`);
    await testDb.owner.query('CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_events()');
    try {
      await expect(k.rotate('unrecorded', rotation('unrecorded'), 0)).rejects.toBeDefined();
      expect((await dataKeys('unrecorded')).map((key) => [key.version, key.state])).toEqual([[1, 'active']]);
    } finally {
      await testDb.owner.query('DROP TRIGGER refuse_events ON audit_events');
    }
  });

  // Many versions cost a read of only what is used: the active one, and each older one the first time it is read.
  it('unwraps a version only when it is first read, and reloads only the active and the cached ones', async () => {
    const k = keyring();
    const first = await k.forWriting('many', 1);
    for (let i = 0; i < 40; i++) await k.rotate('many', rotation('many'), 0);
    const loads: number[][] = [];
    const store = createKeysRepository(testDb.db, createAuditLog(testDb.db, { key: Buffer.alloc(32, 1) }));
    const counting = new Keyring(masterKeys, { ...store, loadTenant: (tenant, versions) => (loads.push(versions), store.loadTenant(tenant, versions)) }, { maxEncryptions: 2 ** 31, reloadAfterMs: 0 });
    const reader = await counting.forReading('many');
    expect((await reader!.dataKey(first.version))!.equals(first.key)).toBe(true);
    await counting.forReading('many');
    expect(loads).toEqual([[], [41, 1]]);
    expect(await reader!.dataKey(999)).toBeNull();
  });
});
