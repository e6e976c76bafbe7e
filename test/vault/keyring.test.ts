import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/crypto/keyring.js';
import { MasterKeySet, parseMasterKeys } from '../../src/crypto/master-keys.js';
import { createKeysRepository } from '../../src/store/keys-repository.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let testDb: TestDb;
const masterKeys = new MasterKeySet(parseMasterKeys(randomBytes(32).toString('base64')));
beforeAll(async () => {
  testDb = await createTestDb({ max: 20 });
});
afterAll(async () => {
  await testDb.drop();
});

const keyring = (maxEncryptions = 2 ** 31, leaseMaxAgeMs?: number) =>
  new Keyring(masterKeys, createKeysRepository(testDb.db), { maxEncryptions, ...(leaseMaxAgeMs ? { leaseMaxAgeMs } : {}) });

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
    const version = await other.rotate('rotated');
    expect(version).toBe(before.version + 1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect((await writer.forWriting('rotated', 1)).version).toBe(version);
  });

  it('answers null for reading a tenant that has no keys, and never creates them', async () => {
    expect(await keyring().forReading('nobody')).toBeNull();
    expect(await dataKeys('nobody')).toEqual([]);
  });
});
