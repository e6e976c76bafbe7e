import { masterKeyCheckValue, masterKeyMatches } from '../crypto/master-key-check.js';
import type { MasterKey } from '../crypto/master-keys.js';
import type { Db } from './db.js';

export class MasterKeyMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyMismatch';
  }
}

/**
 * Refuses to start with a master key that is not the one this database was written with, or without a master
 * key that wraps data keys in use. Nothing is written unless every check passes.
 */
export async function guardMasterKeys(db: Db, masterKeys: MasterKey[]): Promise<void> {
  let checks;
  try {
    checks = await db.query<{ kek_id: string; check_value: Buffer }>('SELECT kek_id, check_value FROM master_key_checks');
  } catch (error) {
    if ((error as { code?: string }).code === '42P01') {
      throw new MasterKeyMismatch('the database has no phonevault schema yet: run `phonevault migrate` (or set MIGRATE_ON_START=true)');
    }
    throw error;
  }
  const stored = new Map(checks.rows.map((row) => [row.kek_id, row.check_value]));
  for (const masterKey of masterKeys) {
    const checkValue = stored.get(masterKey.id);
    if (checkValue && !masterKeyMatches(masterKey, checkValue)) {
      throw new MasterKeyMismatch(`VAULT_MASTER_KEY: the key with id "${masterKey.id}" is not the one this database was written with`);
    }
  }
  const configured = masterKeys.map((k) => k.id);
  const missing = await db.query<{ kek_id: string }>(
    `SELECT DISTINCT kek_id FROM (
       SELECT kek_id FROM data_keys WHERE kek_id IS NOT NULL
       UNION ALL SELECT fingerprint_kek_id FROM tenant_keys
       UNION ALL SELECT kek_id FROM audit_keys) used
     WHERE NOT (kek_id = ANY($1::text[]))`,
    [configured],
  );
  if (missing.rows.length > 0) {
    const ids = missing.rows.map((row) => `"${row.kek_id}"`).join(', ');
    throw new MasterKeyMismatch(`VAULT_MASTER_KEY: data keys are wrapped by master key ${ids}, which is not configured`);
  }
  for (const masterKey of masterKeys) {
    if (stored.has(masterKey.id)) continue;
    await db.query('INSERT INTO master_key_checks (kek_id, check_value) VALUES ($1, $2) ON CONFLICT (kek_id) DO NOTHING', [
      masterKey.id,
      masterKeyCheckValue(masterKey),
    ]);
  }
}
