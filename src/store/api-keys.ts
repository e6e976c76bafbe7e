import type { Db, Queryable } from './db.js';

/** An API key as stored: never the key, only its id and keyed hash. */
export interface ApiKeyRow {
  id: string;
  tenant: string;
  name: string;
  scopes: string[];
  keyHash: Buffer;
  createdBy: string;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
}

export type ApiKeyInfo = Omit<ApiKeyRow, 'keyHash'>;

interface Raw {
  id: string;
  tenant_id: string;
  name: string;
  scopes: string[];
  key_hash: Buffer;
  created_by: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

const COLUMNS = 'id, tenant_id, name, scopes, key_hash, created_by, created_at, expires_at, revoked_at, last_used_at';

const rowOf = (raw: Raw): ApiKeyRow => ({
  id: raw.id,
  tenant: raw.tenant_id,
  name: raw.name,
  scopes: raw.scopes,
  keyHash: raw.key_hash,
  createdBy: raw.created_by,
  createdAt: raw.created_at,
  expiresAt: raw.expires_at,
  revokedAt: raw.revoked_at,
  lastUsedAt: raw.last_used_at,
});

const infoOf = ({ keyHash: _, ...info }: ApiKeyRow): ApiKeyInfo => info;

/** The API keys' table. Every statement names one tenant, but the lookup by id a request's key makes. */
export function createApiKeysStore(db: Db) {
  return {
    async insert(q: Queryable, key: Omit<ApiKeyRow, 'createdAt' | 'revokedAt' | 'lastUsedAt'>): Promise<ApiKeyInfo> {
      const result = await q.query<Raw>(
        `INSERT INTO api_keys (id, tenant_id, name, scopes, key_hash, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
        [key.id, key.tenant, key.name, key.scopes, key.keyHash, key.createdBy, key.expiresAt],
      );
      return infoOf(rowOf(result.rows[0]!));
    },

    /** The key a request presents, whatever its tenant: the key's row says which tenant it belongs to. */
    async find(id: string): Promise<ApiKeyRow | null> {
      const raw = (await db.query<Raw>(`SELECT ${COLUMNS} FROM api_keys WHERE id = $1`, [id])).rows[0];
      return raw ? rowOf(raw) : null;
    },

    /** A page of the tenant's keys (or every tenant's, for the command line), by id. */
    async list(q: Queryable, filter: { tenant: string | null; after: string; limit: number }): Promise<ApiKeyInfo[]> {
      const result = await q.query<Raw>(
        `SELECT ${COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR tenant_id = $1) AND id > $2 ORDER BY id LIMIT $3`,
        [filter.tenant, filter.after, filter.limit],
      );
      return result.rows.map((raw) => infoOf(rowOf(raw)));
    },

    /** Revokes a live key of the tenant; false when it has none by that id, or it was revoked already. */
    async revoke(q: Queryable, tenant: string, id: string): Promise<ApiKeyInfo | null> {
      const result = await q.query<Raw>(`UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING ${COLUMNS}`, [tenant, id]);
      const raw = result.rows[0];
      return raw ? infoOf(rowOf(raw)) : null;
    },

    /** Notes a use, unless one was noted within the hour: a write per key an hour, not per request. */
    async touch(tenant: string, id: string): Promise<void> {
      await db.query(`UPDATE api_keys SET last_used_at = now() WHERE tenant_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 hour')`, [tenant, id]);
    },
  };
}

export type ApiKeysStore = ReturnType<typeof createApiKeysStore>;
