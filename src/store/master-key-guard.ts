import { masterKeyCheckValue, masterKeyMatches } from '../crypto/master-key-check.js';
import { KEK_SETTING, unwraps, type Kek, type KekSet } from '../crypto/kek.js';
import type { Db } from './db.js';
import { kekIdsInUse, oneWrappedUnder } from './keys-repository.js';

export class MasterKeyMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyMismatch';
  }
}

const settingOf = (kek: Kek) => KEK_SETTING[kek.provider];

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
  const missing = (await kekIdsInUse(db)).filter((id) => !keks.get(id));
  if (missing.length > 0) {
    const ids = missing.map((id) => `"${id}"`).join(', ');
    throw new MasterKeyMismatch(`KEK_PROVIDER / VAULT_MASTER_KEY: data keys are wrapped by master key ${ids}, which is not configured`);
  }
  const unchecked = configuredKeks.filter((kek) => !stored.has(kek.id));
  for (const kek of unchecked) {
    // Keys wrapped but no check value (dropped by a re-wrap while another instance still wrapped with it, or a
    // restored backup): the KEK must open one of them before its check value is recorded.
    const sample = await oneWrappedUnder(db, kek.id);
    if (sample && !(await unwraps(() => keks.unwrap(sample.tenant, sample.purpose, sample.version, sample.wrapped)))) {
      throw new MasterKeyMismatch(`${settingOf(kek)}: the key with id "${kek.id}" does not open the keys wrapped under that id`);
    }
  }
  for (const kek of unchecked) {
    await db.query('INSERT INTO master_key_checks (kek_id, check_value) VALUES ($1, $2) ON CONFLICT (kek_id) DO NOTHING', [kek.id, await masterKeyCheckValue(kek)]);
  }
}
