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

export interface DataKeyInfo {
  version: number;
  state: DataKeyState;
  encryptions: number;
  createdAt: Date;
  retiredAt: Date | null;
  destroyedAt: Date | null;
}

export type DestroyOutcome = 'destroyed' | 'not_found' | 'active' | 'in_use' | 'too_recent' | 'already_destroyed';

export interface WrappedKeyRow {
  tenant: string;
  purpose: 'fingerprint' | 'data';
  version: number;
  wrapped: WrappedKey;
}

/** How long a retired version must rest before it may be destroyed: longer than any encryption lease. */
export const DESTROY_GRACE_SECONDS = 30;

/** Key administration: listing, destroying, re-wrapping under a new master key, shredding a tenant. */
export function createKeyAdministration(db: Db) {
  return {
    async listVersions(tenant: string): Promise<DataKeyInfo[]> {
      const result = await db.query<{ version: number; state: DataKeyState; encryptions: string; created_at: Date; retired_at: Date | null; destroyed_at: Date | null }>(
        `SELECT version, state, encryptions, created_at, retired_at, destroyed_at FROM data_keys WHERE tenant_id = $1 ORDER BY version`,
        [tenant],
      );
      return result.rows.map((row) => ({
        version: row.version,
        state: row.state,
        encryptions: Number(row.encryptions),
        createdAt: row.created_at,
        retiredAt: row.retired_at,
        destroyedAt: row.destroyed_at,
      }));
    },

    /**
     * Destroys a retired version's key material, in one statement that also checks no token still needs it
     * and that it has been retired longer than any lease another instance could still be encrypting under.
     */
    async destroyVersion(tenant: string, version: number): Promise<DestroyOutcome> {
      const result = await db.query(
        `UPDATE data_keys SET state = 'destroyed', wrapped_key = NULL, kek_id = NULL, destroyed_at = now()
         WHERE tenant_id = $1 AND version = $2 AND state = 'retired'
           AND retired_at < now() - make_interval(secs => $3)
           AND NOT EXISTS (SELECT 1 FROM tokens WHERE tenant_id = $1 AND key_version = $2)`,
        [tenant, version, DESTROY_GRACE_SECONDS],
      );
      if (result.rowCount === 1) return 'destroyed';
      const why = await db.query<{ state: DataKeyState; recent: boolean; in_use: boolean }>(
        `SELECT state, retired_at >= now() - make_interval(secs => $3) AS recent,
                EXISTS (SELECT 1 FROM tokens WHERE tenant_id = $1 AND key_version = $2) AS in_use
         FROM data_keys WHERE tenant_id = $1 AND version = $2`,
        [tenant, version, DESTROY_GRACE_SECONDS],
      );
      const row = why.rows[0];
      if (!row) return 'not_found';
      if (row.state === 'active') return 'active';
      if (row.state === 'destroyed') return 'already_destroyed';
      return row.in_use ? 'in_use' : 'too_recent';
    },

    async listTenants(): Promise<string[]> {
      return (await db.query<{ tenant_id: string }>('SELECT tenant_id FROM tenant_keys ORDER BY tenant_id')).rows.map((row) => row.tenant_id);
    },

    async wrappedNotUnder(kekId: string): Promise<WrappedKeyRow[]> {
      const result = await db.query<{ tenant_id: string; purpose: 'fingerprint' | 'data'; version: number; kek_id: string; blob: Buffer }>(
        `SELECT tenant_id, 'fingerprint' AS purpose, 0 AS version, fingerprint_kek_id AS kek_id, fingerprint_key AS blob
         FROM tenant_keys WHERE fingerprint_kek_id <> $1
         UNION ALL
         SELECT tenant_id, 'data', version, kek_id, wrapped_key FROM data_keys WHERE kek_id IS NOT NULL AND kek_id <> $1`,
        [kekId],
      );
      return result.rows.map((row) => ({ tenant: row.tenant_id, purpose: row.purpose, version: row.version, wrapped: { kekId: row.kek_id, blob: row.blob } }));
    },

    /** Swaps one wrapped key for its re-wrap, only if it is still wrapped as read. */
    async replaceWrapped(row: WrappedKeyRow, next: WrappedKey): Promise<boolean> {
      const result =
        row.purpose === 'fingerprint'
          ? await db.query(
              `UPDATE tenant_keys SET fingerprint_kek_id = $3, fingerprint_key = $4 WHERE tenant_id = $1 AND fingerprint_kek_id = $2`,
              [row.tenant, row.wrapped.kekId, next.kekId, next.blob],
            )
          : await db.query(
              `UPDATE data_keys SET kek_id = $4, wrapped_key = $5 WHERE tenant_id = $1 AND version = $2 AND kek_id = $3`,
              [row.tenant, row.version, row.wrapped.kekId, next.kekId, next.blob],
            );
      return result.rowCount === 1;
    },

    /** Crypto-shreds a tenant: its keys go in one statement, which makes every row of it unreadable at once. */
    async destroyTenantKeys(tenant: string): Promise<number> {
      const versions = await db.query<{ n: string }>('SELECT count(*) AS n FROM data_keys WHERE tenant_id = $1', [tenant]);
      await db.query('DELETE FROM tenant_keys WHERE tenant_id = $1', [tenant]);
      return Number(versions.rows[0]?.n ?? 0);
    },
  };
}

export type KeyAdministration = ReturnType<typeof createKeyAdministration>;
