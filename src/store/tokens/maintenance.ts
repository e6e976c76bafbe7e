import type { Db } from '../db.js';
import { deleteTenantByTenant } from '../sql.js';
import type { EnvelopeRow } from './rows.js';

// $2 is the active version.
const NEEDS_REWRAP = '(key_version <> $2 OR get_byte(envelope, 0) = 1)';

/** Token maintenance: re-wrap, per-version counts, expiry and shredding. Every write names one tenant. */
export function createTokenMaintenance(db: Db) {
  return {
    /**
     * Tokens to re-wrap, after `afterId` in id order: those not under `activeVersion`, and those whose envelope
     * has the format from before the fingerprint was bound (its first byte, src/crypto/number-envelope.ts).
     */
    async pageForRewrap(tenant: string, activeVersion: number, afterId: Buffer, limit: number): Promise<EnvelopeRow[]> {
      const result = await db.query<{ token_id: Buffer; key_version: number; envelope: Buffer; fingerprint: Buffer }>(
        `SELECT token_id, key_version, envelope, fingerprint FROM tokens
         WHERE tenant_id = $1 AND token_id > $3 AND ${NEEDS_REWRAP}
         ORDER BY token_id LIMIT $4`,
        [tenant, activeVersion, afterId, limit],
      );
      return result.rows.map((row) => ({ tokenId: row.token_id, keyVersion: row.key_version, envelope: row.envelope, fingerprint: row.fingerprint }));
    },

    /** How many of the tenant's tokens a re-wrap to `activeVersion` would move. */
    async countForRewrap(tenant: string, activeVersion: number): Promise<number> {
      const result = await db.query<{ n: string }>(`SELECT count(*) AS n FROM tokens WHERE tenant_id = $1 AND ${NEEDS_REWRAP}`, [tenant, activeVersion]);
      return Number(result.rows[0]!.n);
    },

    /** Replaces envelopes in one statement; a row changed or erased meanwhile (other version) is left alone. */
    async replaceEnvelopes(tenant: string, rows: Array<{ tokenId: Buffer; fromVersion: number; toVersion: number; envelope: Buffer }>): Promise<number> {
      const result = await db.query(
        `UPDATE tokens t SET envelope = u.envelope, key_version = u.to_version
         FROM unnest($2::bytea[], $3::int[], $4::int[], $5::bytea[]) AS u(token_id, from_version, to_version, envelope)
         WHERE t.tenant_id = $1 AND t.token_id = u.token_id AND t.key_version = u.from_version`,
        [tenant, rows.map((r) => r.tokenId), rows.map((r) => r.fromVersion), rows.map((r) => r.toVersion), rows.map((r) => r.envelope)],
      );
      return result.rowCount;
    },

    /** Tokens per key version, for the versions asked (all when none are named). */
    async countByVersion(tenant: string, versions?: number[]): Promise<Map<number, number>> {
      const result = await db.query<{ key_version: number; n: string }>(
        'SELECT key_version, count(*) AS n FROM tokens WHERE tenant_id = $1 AND ($2::int[] IS NULL OR key_version = ANY($2::int[])) GROUP BY key_version',
        [tenant, versions ?? null],
      );
      return new Map(result.rows.map((row) => [row.key_version, Number(row.n)]));
    },

    /**
     * Deletes expired tokens, up to `limit` a tenant, of the tenants holding the first `limit` found: short
     * statements, so the sweep never holds locks long, and each delete names its tenant (one shard when distributed).
     */
    async sweepExpired(limit: number): Promise<number> {
      return deleteTenantByTenant(
        db,
        `SELECT DISTINCT tenant_id FROM (SELECT tenant_id FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= now() LIMIT $1) expired`,
        `DELETE FROM tokens WHERE tenant_id = $1 AND token_id IN (
           SELECT token_id FROM tokens WHERE tenant_id = $1 AND expires_at IS NOT NULL AND expires_at <= now() LIMIT $2)`,
        limit,
      );
    },

    async deleteTenantPage(tenant: string, limit: number): Promise<number> {
      const result = await db.query(
        `DELETE FROM tokens WHERE tenant_id = $1 AND token_id IN (SELECT token_id FROM tokens WHERE tenant_id = $1 LIMIT $2)`,
        [tenant, limit],
      );
      return result.rowCount;
    },

    async hasTokens(tenant: string): Promise<boolean> {
      return (await db.query('SELECT 1 FROM tokens WHERE tenant_id = $1 LIMIT 1', [tenant])).rowCount > 0;
    },
  };
}

export type TokenMaintenance = ReturnType<typeof createTokenMaintenance>;
