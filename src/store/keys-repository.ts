import type { KeyStore, RotateOutcome, TenantKeysRecord } from '../crypto/key-store.js';
import type { DataKeyState } from '../crypto/keyring.js';
import type { KeyPurpose, WrappedKey } from '../crypto/kek.js';
import type { AuditLog } from './audit-log.js';
import type { Db, Queryable } from './db.js';
import { VAULT_KEYS, type VaultKeyPurpose } from './audit-key.js';

// The keyring's commits are made from inside other commits' work too (src/store/audit-log.ts, CommitOptions).
const OUTSIDE_QUEUE = { queued: false } as const;

/** The keyring's storage; a rotation commits its audit event with it, or does not happen. */
export function createKeysRepository(db: Db, auditLog: AuditLog): KeyStore {
  return {
    async loadTenant(tenant, versions): Promise<TenantKeysRecord | null> {
      const tenantRow = await db.query<{ fingerprint_kek_id: string; fingerprint_key: Buffer }>(
        'SELECT fingerprint_kek_id, fingerprint_key FROM tenant_keys WHERE tenant_id = $1',
        [tenant],
      );
      const first = tenantRow.rows[0];
      if (!first) return null;
      // The active version, and of the versions the caller holds unwrapped, those not destroyed: never all versions.
      const keys = await db.query<{ version: number; state: DataKeyState; kek_id: string; wrapped_key: Buffer }>(
        `SELECT version, state, kek_id, wrapped_key FROM data_keys
         WHERE tenant_id = $1 AND state <> 'destroyed' AND (state = 'active' OR version = ANY($2::int[]))`,
        [tenant, versions],
      );
      const active = keys.rows.find((row) => row.state === 'active');
      if (!active) return null;
      return {
        fingerprint: { kekId: first.fingerprint_kek_id, blob: first.fingerprint_key },
        active: { version: active.version, wrapped: { kekId: active.kek_id, blob: active.wrapped_key } },
        kept: keys.rows.map((row) => ({ version: row.version, wrapped: { kekId: row.kek_id, blob: row.wrapped_key } })),
      };
    },

    async loadDataKey(tenant, version) {
      const result = await db.query<{ kek_id: string; wrapped_key: Buffer }>(
        `SELECT kek_id, wrapped_key FROM data_keys WHERE tenant_id = $1 AND version = $2 AND state <> 'destroyed'`,
        [tenant, version],
      );
      const row = result.rows[0];
      return row ? { kekId: row.kek_id, blob: row.wrapped_key } : null;
    },

    createTenantKeys: (tenant, fingerprint: WrappedKey, firstDataKey: WrappedKey, event) =>
      auditLog.commit(tenant, async (tx) => {
        const created = await tx.query(
          `INSERT INTO tenant_keys (tenant_id, fingerprint_kek_id, fingerprint_key) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO NOTHING`,
          [tenant, fingerprint.kekId, fingerprint.blob],
        );
        if (created.rowCount === 0) return { value: false, events: [] };
        await tx.query(
          `INSERT INTO data_keys (tenant_id, version, kek_id, wrapped_key, state) VALUES ($1, 1, $2, $3, 'active')`,
          [tenant, firstDataKey.kekId, firstDataKey.blob],
        );
        return { value: true, events: [event] };
      }, OUTSIDE_QUEUE),

    async reserveEncryptions(tenant, version, count, budget) {
      const result = await db.query(
        `UPDATE data_keys SET encryptions = encryptions + $3
         WHERE tenant_id = $1 AND version = $2 AND state = 'active' AND encryptions + $3 <= $4`,
        [tenant, version, count, budget],
      );
      return result.rowCount === 1;
    },

    rotateDataKey: (tenant, fromVersion, next, { event, minAgeMs }) =>
      auditLog.commit(tenant, async (tx) => {
        // Both times the database's; compared here, since a distributed Postgres takes no clock in a RETURNING.
        const retired = await tx.query<{ created_at: Date; retired_at: Date }>(
          `UPDATE data_keys SET state = 'retired', retired_at = now()
           WHERE tenant_id = $1 AND version = $2 AND state = 'active'
           RETURNING created_at, retired_at`,
          [tenant, fromVersion],
        );
        const row = retired.rows[0];
        if (!row) return { value: 'not_active' as RotateOutcome, events: [] };
        // Refused: the UPDATE above is rolled back with the transaction.
        if (row.retired_at.getTime() - row.created_at.getTime() < minAgeMs) throw new RotationTooSoon();
        await tx.query(`INSERT INTO data_keys (tenant_id, version, kek_id, wrapped_key, state) VALUES ($1, $2, $3, $4, 'active')`, [
          tenant,
          fromVersion + 1,
          next.kekId,
          next.blob,
        ]);
        return { value: 'rotated' as RotateOutcome, events: [event] };
      }, OUTSIDE_QUEUE).catch((error: unknown) => {
        if (error instanceof RotationTooSoon) return 'too_soon' as const;
        throw error;
      }),
  };
}

class RotationTooSoon extends Error {}

export interface DataKeyInfo {
  version: number;
  state: DataKeyState;
  encryptions: number;
  createdAt: Date;
  retiredAt: Date | null;
  destroyedAt: Date | null;
  /** The KEK that wraps it; null once destroyed. */
  kekId: string | null;
}

export type DestroyOutcome = 'destroyed' | 'not_found' | 'active' | 'in_use' | 'too_recent' | 'already_destroyed';

export interface WrappedKeyRow {
  tenant: string;
  purpose: KeyPurpose;
  version: number;
  wrapped: WrappedKey;
}

/** Whether a tenant has keys or tokens: read before anything else, so that an unknown tenant writes nothing. */
export async function tenantExists(q: Queryable, tenant: string): Promise<boolean> {
  const result = await q.query<{ known: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM tenant_keys WHERE tenant_id = $1) OR EXISTS (SELECT 1 FROM tokens WHERE tenant_id = $1) AS known',
    [tenant],
  );
  return result.rows[0]!.known;
}

/** How long a retired version must rest before it may be destroyed: longer than any encryption lease. */
export const DESTROY_GRACE_SECONDS = 30;

// Key administration. The functions that take a Queryable run inside the use-case's audited transaction.

/** A page of the tenant's versions, in version order after `afterVersion`. */
export async function listVersions(q: Queryable, tenant: string, page: { afterVersion: number; limit: number }): Promise<DataKeyInfo[]> {
  const result = await q.query<{ version: number; state: DataKeyState; encryptions: string; created_at: Date; retired_at: Date | null; destroyed_at: Date | null; kek_id: string | null }>(
    `SELECT version, state, encryptions, created_at, retired_at, destroyed_at, kek_id FROM data_keys
     WHERE tenant_id = $1 AND version > $2 ORDER BY version LIMIT $3`,
    [tenant, page.afterVersion, page.limit],
  );
  return result.rows.map((row) => ({
    version: row.version,
    state: row.state,
    encryptions: Number(row.encryptions),
    createdAt: row.created_at,
    retiredAt: row.retired_at,
    destroyedAt: row.destroyed_at,
    kekId: row.kek_id,
  }));
}

/**
 * Destroys a retired version's key material, in one statement that also checks no token still needs it and
 * that it has been retired longer than any lease another instance could still be encrypting under.
 */
export async function destroyVersion(q: Queryable, tenant: string, version: number): Promise<DestroyOutcome> {
  const result = await q.query(
    `UPDATE data_keys SET state = 'destroyed', wrapped_key = NULL, kek_id = NULL, destroyed_at = now()
     WHERE tenant_id = $1 AND version = $2 AND state = 'retired'
       AND retired_at < now() - make_interval(secs => $3)
       AND NOT EXISTS (SELECT 1 FROM tokens WHERE tenant_id = $1 AND key_version = $2)`,
    [tenant, version, DESTROY_GRACE_SECONDS],
  );
  if (result.rowCount === 1) return 'destroyed';
  const why = await q.query<{ state: DataKeyState; in_use: boolean }>(
    `SELECT state, EXISTS (SELECT 1 FROM tokens WHERE tenant_id = $1 AND key_version = $2) AS in_use
     FROM data_keys WHERE tenant_id = $1 AND version = $2`,
    [tenant, version],
  );
  const row = why.rows[0];
  if (!row) return 'not_found';
  if (row.state === 'active') return 'active';
  if (row.state === 'destroyed') return 'already_destroyed';
  return row.in_use ? 'in_use' : 'too_recent';
}

/** Crypto-shreds a tenant: its keys go in one statement, which makes every row of it unreadable at once. */
export async function destroyTenantKeys(q: Queryable, tenant: string): Promise<number> {
  const versions = await q.query<{ n: string }>('SELECT count(*) AS n FROM data_keys WHERE tenant_id = $1', [tenant]);
  await q.query('DELETE FROM tenant_keys WHERE tenant_id = $1', [tenant]);
  return Number(versions.rows[0]?.n ?? 0);
}

/** The maintenance commands' view of every tenant's keys: listing tenants and re-wrapping under a new master key. */
/** Every wrapped key, whoever owns it, as (tenant_id, purpose, version, kek_id, blob): the one list of what a KEK wraps. */
const WRAPPED_KEYS = `SELECT tenant_id, 'fingerprint' AS purpose, 0 AS version, fingerprint_kek_id AS kek_id, fingerprint_key AS blob FROM tenant_keys
  UNION ALL SELECT tenant_id, 'data', version, kek_id, wrapped_key FROM data_keys WHERE kek_id IS NOT NULL
  UNION ALL SELECT '', CASE id WHEN 1 THEN 'audit' ELSE 'api-key' END, 1, kek_id, wrapped_key FROM audit_keys`;

type WrappedKeyColumns = { tenant_id: string; purpose: KeyPurpose; version: number; kek_id: string; blob: Buffer };
const wrappedKeyRow = (row: WrappedKeyColumns): WrappedKeyRow => ({ tenant: row.tenant_id, purpose: row.purpose, version: row.version, wrapped: { kekId: row.kek_id, blob: row.blob } });

/** The ids of the KEKs that wrap at least one key. */
export async function kekIdsInUse(q: Queryable): Promise<string[]> {
  return (await q.query<{ kek_id: string }>(`SELECT DISTINCT kek_id FROM (${WRAPPED_KEYS}) wrapped ORDER BY kek_id`)).rows.map((row) => row.kek_id);
}

/** One key the KEK wraps, if any: what a KEK without a check value is tried on before one is recorded for it. */
export async function oneWrappedUnder(q: Queryable, kekId: string): Promise<WrappedKeyRow | null> {
  const row = (await q.query<WrappedKeyColumns>(`SELECT * FROM (${WRAPPED_KEYS}) wrapped WHERE kek_id = $1 LIMIT 1`, [kekId])).rows[0];
  return row ? wrappedKeyRow(row) : null;
}

export function createKeyAdministration(db: Db) {
  return {
    async listTenants(): Promise<string[]> {
      return (await db.query<{ tenant_id: string }>('SELECT tenant_id FROM tenant_keys ORDER BY tenant_id')).rows.map((row) => row.tenant_id);
    },

    /** Versions per state and the largest encryption count of an active version, across tenants (metrics). */
    async stats(): Promise<{ states: Map<string, number>; maxActiveEncryptions: number }> {
      const result = await db.query<{ state: string; n: string; top: string | null }>(
        `SELECT state, count(*) AS n, max(encryptions) FILTER (WHERE state = 'active') AS top FROM data_keys GROUP BY state`,
      );
      return {
        states: new Map(result.rows.map((row) => [row.state, Number(row.n)])),
        maxActiveEncryptions: Math.max(0, ...result.rows.map((row) => Number(row.top ?? 0))),
      };
    },

    async activeVersion(tenant: string): Promise<number | null> {
      return (await db.query<{ version: number }>(`SELECT version FROM data_keys WHERE tenant_id = $1 AND state = 'active'`, [tenant])).rows[0]?.version ?? null;
    },

    async hasKeys(tenant: string): Promise<boolean> {
      return (await db.query('SELECT 1 FROM tenant_keys WHERE tenant_id = $1', [tenant])).rowCount > 0;
    },

    /** Every wrapped key (fingerprint, data and the vault's own keys) not wrapped by the master key `kekId`. */
    async wrappedNotUnder(kekId: string): Promise<WrappedKeyRow[]> {
      return (await db.query<WrappedKeyColumns>(`SELECT * FROM (${WRAPPED_KEYS}) wrapped WHERE kek_id <> $1`, [kekId])).rows.map(wrappedKeyRow);
    },

    /**
     * Drops the check values of KEKs other than `activeId` that wrap no key any more, so that a retired KEK leaves
     * nothing behind (a check value is a seal under it). Returns their ids. Needs the owner's role.
     */
    async forgetUnusedChecks(activeId: string): Promise<string[]> {
      const result = await db.query<{ kek_id: string }>(
        `DELETE FROM master_key_checks c
         WHERE c.kek_id <> $1 AND NOT EXISTS (SELECT 1 FROM (${WRAPPED_KEYS}) wrapped WHERE wrapped.kek_id = c.kek_id)
         RETURNING c.kek_id`,
        [activeId],
      );
      return result.rows.map((row) => row.kek_id).sort();
    },

    /** Swaps one wrapped key for its re-wrap, only if it is still wrapped as read. */
    async replaceWrapped(row: WrappedKeyRow, next: WrappedKey): Promise<boolean> {
      const [sql, values] =
        row.purpose === 'fingerprint'
          ? ['UPDATE tenant_keys SET fingerprint_kek_id = $3, fingerprint_key = $4 WHERE tenant_id = $1 AND fingerprint_kek_id = $2', [row.tenant, row.wrapped.kekId, next.kekId, next.blob]]
          : row.purpose === 'data'
            ? ['UPDATE data_keys SET kek_id = $4, wrapped_key = $5 WHERE tenant_id = $1 AND version = $2 AND kek_id = $3', [row.tenant, row.version, row.wrapped.kekId, next.kekId, next.blob]]
            : ['UPDATE audit_keys SET kek_id = $2, wrapped_key = $3 WHERE id = $4 AND kek_id = $1', [row.wrapped.kekId, next.kekId, next.blob, VAULT_KEYS[row.purpose as VaultKeyPurpose]]];
      return (await db.query(sql, values)).rowCount === 1;
    },
  };
}

export type KeyAdministration = ReturnType<typeof createKeyAdministration>;
