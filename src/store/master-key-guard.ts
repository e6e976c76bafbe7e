import { masterKeyCheckValue, masterKeyMatches } from '../crypto/master-key-check.js';
import type { Kek, KekSet } from '../crypto/kek.js';
import type { Db } from './db.js';

export class MasterKeyMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyMismatch';
  }
}

/** The setting an operator fixes for a KEK of this provider. */
const settingOf = (kek: Kek) => (kek.provider === 'env' ? 'VAULT_MASTER_KEY' : 'PKCS11_KEY_LABEL');

/**
 * Refuses to start with a KEK that is not the one this database was written with, or without a KEK that wraps
 * data keys in use, whatever the providers. Nothing is written unless every check passes.
 */
export async function guardMasterKeys(db: Db, keks: KekSet): Promise<void> {
  const configuredKeks = keks.ids.map((id) => keks.get(id)!);
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
  for (const kek of configuredKeks) {
    const checkValue = stored.get(kek.id);
    if (checkValue && !(await masterKeyMatches(kek, checkValue))) {
      throw new MasterKeyMismatch(`${settingOf(kek)}: the key with id "${kek.id}" is not the one this database was written with`);
    }
  }
  const configured = keks.ids;
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
    throw new MasterKeyMismatch(`KEK_PROVIDER / VAULT_MASTER_KEY: data keys are wrapped by master key ${ids}, which is not configured`);
  }
  for (const kek of configuredKeks) {
    if (stored.has(kek.id)) continue;
    await db.query('INSERT INTO master_key_checks (kek_id, check_value) VALUES ($1, $2) ON CONFLICT (kek_id) DO NOTHING', [
      kek.id,
      await masterKeyCheckValue(kek),
    ]);
  }
}
