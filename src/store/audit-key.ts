import { randomBytes } from 'node:crypto';
import { KEY_BYTES } from '../crypto/aead.js';
import type { MasterKeySet } from '../crypto/master-keys.js';
import type { Queryable } from './db.js';

// The audit key belongs to the vault, not to a tenant: no tenant id is empty, so '' can never collide with one.
const VAULT = '';

/**
 * The key the audit chain and its checkpoints are signed under: random, made on the first start, stored only
 * wrapped by the master key (and re-wrapped with the data keys by `keys rewrap-master`).
 */
export async function loadAuditKey(db: Queryable, masterKeys: MasterKeySet): Promise<Buffer> {
  const read = async () => (await db.query<{ kek_id: string; wrapped_key: Buffer }>('SELECT kek_id, wrapped_key FROM audit_keys WHERE id = 1')).rows[0];
  let row = await read();
  if (!row) {
    const wrapped = masterKeys.wrap(VAULT, 'audit', 1, randomBytes(KEY_BYTES));
    await db.query('INSERT INTO audit_keys (id, kek_id, wrapped_key) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING', [wrapped.kekId, wrapped.blob]);
    row = await read();
    if (!row) throw new Error('the audit key vanished right after creation');
  }
  return masterKeys.unwrap(VAULT, 'audit', 1, { kekId: row.kek_id, blob: row.wrapped_key });
}
