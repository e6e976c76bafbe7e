import type { Db } from './db.js';

export interface NewTokenRow {
  tokenId: Buffer;
  keyVersion: number;
  envelope: Buffer;
  fingerprint: Buffer;
  deterministic: boolean;
  country: string | null;
  lineType: string;
  expiresAt: Date | null;
}

export interface StoredToken {
  tokenId: Buffer;
  keyVersion: number;
  envelope: Buffer;
  deterministic: boolean;
  country: string | null;
  lineType: string;
  createdAt: Date;
  expiresAt: Date | null;
}

interface TokenRow {
  token_id: Buffer;
  key_version: number;
  envelope: Buffer;
  deterministic: boolean;
  country: string | null;
  line_type: string;
  created_at: Date;
  expires_at: Date | null;
}

const toStoredToken = (row: TokenRow): StoredToken => ({
  tokenId: row.token_id,
  keyVersion: row.key_version,
  envelope: row.envelope,
  deterministic: row.deterministic,
  country: row.country,
  lineType: row.line_type,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
});

export function createTokensRepository(db: Db) {
  return {
    /**
     * Stores every row in one statement: all or none. A deterministic row whose number already has a token
     * is skipped; the answer maps each deterministic row's fingerprint (hex) to the token id that now holds it.
     */
    async insert(tenant: string, rows: NewTokenRow[]): Promise<Map<string, Buffer>> {
      const inserted = await db.query<{ token_id: Buffer; fingerprint: Buffer; deterministic: boolean }>(
        `INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, country, line_type, expires_at)
         SELECT $1, * FROM unnest($2::bytea[], $3::int[], $4::bytea[], $5::bytea[], $6::bool[], $7::text[], $8::text[], $9::timestamptz[])
         ON CONFLICT (tenant_id, fingerprint) WHERE deterministic DO NOTHING
         RETURNING token_id, fingerprint, deterministic`,
        [
          tenant,
          rows.map((r) => r.tokenId),
          rows.map((r) => r.keyVersion),
          rows.map((r) => r.envelope),
          rows.map((r) => r.fingerprint),
          rows.map((r) => r.deterministic),
          rows.map((r) => r.country),
          rows.map((r) => r.lineType),
          rows.map((r) => r.expiresAt),
        ],
      );
      const holders = new Map<string, Buffer>();
      for (const row of inserted.rows) if (row.deterministic) holders.set(row.fingerprint.toString('hex'), row.token_id);
      return holders;
    },

    /** The deterministic tokens already held by these fingerprints (a fresh statement sees concurrent commits). */
    async findDeterministic(tenant: string, fingerprints: Buffer[]): Promise<Map<string, StoredToken & { fingerprint: Buffer }>> {
      const result = await db.query<TokenRow & { fingerprint: Buffer }>(
        `SELECT token_id, key_version, envelope, deterministic, country, line_type, created_at, expires_at, fingerprint
         FROM tokens WHERE tenant_id = $1 AND deterministic AND fingerprint = ANY($2::bytea[])`,
        [tenant, fingerprints],
      );
      return new Map(result.rows.map((row) => [row.fingerprint.toString('hex'), { ...toStoredToken(row), fingerprint: row.fingerprint }]));
    },

    /** Live (unexpired) tokens of the tenant among these ids. */
    async findLive(tenant: string, tokenIds: Buffer[]): Promise<StoredToken[]> {
      const result = await db.query<TokenRow>(
        `SELECT token_id, key_version, envelope, deterministic, country, line_type, created_at, expires_at
         FROM tokens WHERE tenant_id = $1 AND token_id = ANY($2::bytea[]) AND (expires_at IS NULL OR expires_at > now())`,
        [tenant, tokenIds],
      );
      return result.rows.map(toStoredToken);
    },
  };
}

export type TokensRepository = ReturnType<typeof createTokensRepository>;
