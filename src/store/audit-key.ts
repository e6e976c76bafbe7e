import { randomBytes } from 'node:crypto';
import { KEY_BYTES } from '../crypto/aead.js';
import type { KekSet } from '../crypto/kek.js';
import type { Queryable } from './db.js';

// The vault's own keys belong to no tenant: no tenant id is empty, so '' can never collide with one.
const VAULT = '';

/** The vault's own keys and their rows in `audit_keys` (migration 006 names the table's second use). */
export const VAULT_KEYS = { audit: 1, 'api-key': 2 } as const;
export type VaultKeyPurpose = keyof typeof VAULT_KEYS;

/**
 * One of the vault's own keys (the audit chain's signing key, the API-key hashing key): random, made on the
 * first start, stored only wrapped by the master key (and re-wrapped with the data keys by `keys rewrap-master`).
 */
export async function loadVaultKey(db: Queryable, keks: KekSet, purpose: VaultKeyPurpose): Promise<Buffer> {
  const id = VAULT_KEYS[purpose];
  const read = async () => (await db.query<{ kek_id: string; wrapped_key: Buffer }>('SELECT kek_id, wrapped_key FROM audit_keys WHERE id = $1', [id])).rows[0];
  let row = await read();
  if (!row) {
    const wrapped = await keks.wrap(VAULT, purpose, 1, randomBytes(KEY_BYTES));
    await db.query('INSERT INTO audit_keys (id, kek_id, wrapped_key) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [id, wrapped.kekId, wrapped.blob]);
    row = await read();
    if (!row) throw new Error(`the ${purpose} key vanished right after creation`);
  }
  return keks.unwrap(VAULT, purpose, 1, { kekId: row.kek_id, blob: row.wrapped_key });
}

export const loadAuditKey = (db: Queryable, keks: KekSet) => loadVaultKey(db, keks, 'audit');
