import type { DataKeyRecord, DataKeyState, KeyStore, TenantKeysRecord } from '../crypto/keyring.js';
import type { WrappedKey } from '../crypto/master-keys.js';
import type { Db } from './db.js';

interface DataKeyRow {
  version: number;
  state: DataKeyState;
  kek_id: string | null;
  wrapped_key: Buffer | null;
}

export function createKeysRepository(db: Db): KeyStore {
  return {
    async loadTenantKeys(tenant): Promise<TenantKeysRecord | null> {
      const tenantRow = await db.query<{ fingerprint_kek_id: string; fingerprint_key: Buffer }>(
        'SELECT fingerprint_kek_id, fingerprint_key FROM tenant_keys WHERE tenant_id = $1',
        [tenant],
      );
      const first = tenantRow.rows[0];
      if (!first) return null;
      const keys = await db.query<DataKeyRow>(
        'SELECT version, state, kek_id, wrapped_key FROM data_keys WHERE tenant_id = $1 ORDER BY version',
        [tenant],
      );
      return {
        fingerprint: { kekId: first.fingerprint_kek_id, blob: first.fingerprint_key },
        dataKeys: keys.rows.map(
          (row): DataKeyRecord => ({
            version: row.version,
            state: row.state,
            wrapped: row.kek_id && row.wrapped_key ? { kekId: row.kek_id, blob: row.wrapped_key } : null,
          }),
        ),
      };
    },

    async createTenantKeys(tenant, fingerprint: WrappedKey, firstDataKey: WrappedKey) {
      await db.transact(async (tx) => {
        const created = await tx.query(
          `INSERT INTO tenant_keys (tenant_id, fingerprint_kek_id, fingerprint_key) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO NOTHING`,
          [tenant, fingerprint.kekId, fingerprint.blob],
        );
        if (created.rowCount === 0) return;
        await tx.query(
          `INSERT INTO data_keys (tenant_id, version, kek_id, wrapped_key, state) VALUES ($1, 1, $2, $3, 'active')`,
          [tenant, firstDataKey.kekId, firstDataKey.blob],
        );
      });
    },

    async reserveEncryptions(tenant, version, count, budget) {
      const result = await db.query(
        `UPDATE data_keys SET encryptions = encryptions + $3
         WHERE tenant_id = $1 AND version = $2 AND state = 'active' AND encryptions + $3 <= $4`,
        [tenant, version, count, budget],
      );
      return result.rowCount === 1;
    },

    async rotateDataKey(tenant, fromVersion, next) {
      await db.transact(async (tx) => {
        const retired = await tx.query(
          `UPDATE data_keys SET state = 'retired', retired_at = now()
           WHERE tenant_id = $1 AND version = $2 AND state = 'active'`,
          [tenant, fromVersion],
        );
        if (retired.rowCount === 0) return;
        await tx.query(
          `INSERT INTO data_keys (tenant_id, version, kek_id, wrapped_key, state) VALUES ($1, $2, $3, $4, 'active')`,
          [tenant, fromVersion + 1, next.kekId, next.blob],
        );
      });
    },
  };
}
