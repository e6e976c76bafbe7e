import { createBatcher } from './batcher.js';
import { StorageUnavailableError, type Db } from './db.js';
import type { AuditEvent } from '../audit/chain.js';
import { FINGERPRINT_BYTES } from '../crypto/fingerprint.js';
import { TOKEN_ID_BYTES } from '../crypto/tokens.js';
import { auditAppendCtes, type AuditRepository } from './audit-repository.js';
import { packedAt, packFixed } from './packed.js';

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

interface InsertJob {
  tenant: string;
  rows: NewTokenRow[];
  /** Committed with the rows, in the same statement, when given. */
  event: AuditEvent | undefined;
}

interface ReadJob {
  tenant: string;
  tokenIds: Buffer[];
  /** Committed with the read, in the same statement, when given. */
  event: AuditEvent | undefined;
}

// latin1 maps each byte to one character: the cheapest exact string form of an id for a Map key.
const key = (tenant: string, id: Buffer) => `${tenant}\u0000${id.toString('latin1')}`;

/**
 * A flush's rows, one statement: all or none. A deterministic row whose number already has a token is skipped.
 * The fixed-width byte columns travel packed, one bytea each (sent in binary): $2 the token ids, 16 bytes apiece;
 * $4 the envelopes, $10 bytes apiece (one width per flush, src/crypto/number-envelope.ts pads every number to
 * it); $5 the fingerprints, 32 bytes apiece. Measured against bytea[] arrays (hex-encoded by the driver, parsed
 * back element by element by the server), a 1000-row insert takes about a fifth less time.
 */
const insertTokensSql = (where = '') => `INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, country, line_type, expires_at)
  SELECT u.tenant_id,
    ${packedAt('$2', 'u.i', TOKEN_ID_BYTES)},
    u.key_version,
    ${packedAt('$4', 'u.i', '$10::int')},
    ${packedAt('$5', 'u.i', FINGERPRINT_BYTES)},
    u.deterministic, u.country, u.line_type, u.expires_at
  FROM unnest($1::text[], $3::int[], $6::bool[], $7::text[], $8::text[], $9::timestamptz[])
    WITH ORDINALITY AS u(tenant_id, key_version, deterministic, country, line_type, expires_at, i)${where}
  ON CONFLICT (tenant_id, fingerprint) WHERE deterministic DO NOTHING
  RETURNING tenant_id, token_id`;
const INSERT_TOKENS_SQL = insertTokensSql();

/**
 * The same insert with audit events appended in the same statement ($11… are the append's parameters). The
 * tenants' chain heads are locked before any row goes in (the scalar subquery is evaluated first): a flush that
 * meets another's uncommitted deterministic row waits for it while holding no head, so that two instances'
 * flushes can never hold what the other waits for. The insert comes first in the text so that the statement reads
 * as what it is in pg_stat_activity, which keeps only the start.
 */
const INSERT_TOKENS_AUDITED_SQL = `WITH RECURSIVE inserted AS (${insertTokensSql('\n  WHERE (SELECT count(*) FROM audit_locked) >= 0')}),
  ${auditAppendCtes(11)}
  SELECT tenant_id, token_id FROM inserted`;

interface InsertedRow {
  tenant_id: string;
  token_id: Buffer;
}

/**
 * The sealed rows of a flush's ids: $1 the tenant of each id, $2 the ids packed 16 bytes apiece. One primary-key
 * probe per id, whatever the statistics say: the LIMIT keeps the planner from turning the lateral lookup into a
 * join, which with stale statistics (a table that just grew) became a hash join over a sequential scan, 20×
 * slower (test/store/read-plan.test.ts).
 *
 * The rows found come back packed into one bytea (`unpackSealed` below reads it), each as: the 1-based position
 * of its id (u32), key version (u32), country length (i16, −1 for none) and bytes, envelope length (u32) and
 * bytes. One value to decode instead of a thousand rows of four fields each: for a batch read, row decoding was
 * a fifth of the event loop's time, and most of its garbage.
 */
export const READ_SEALED_SQL = `SELECT string_agg(
    int4send(u.i::int) || int4send(t.key_version)
      || int2send(coalesce(octet_length(t.country), -1)::int2) || coalesce(convert_to(t.country, 'UTF8'), ''::bytea)
      || int4send(octet_length(t.envelope)) || t.envelope,
    ''::bytea) AS packed
  FROM unnest($1::text[]) WITH ORDINALITY AS u(tenant_id, i)
  CROSS JOIN LATERAL (
    SELECT key_version, envelope, country FROM tokens
    WHERE tenant_id = u.tenant_id AND token_id = ${packedAt('$2', 'u.i', TOKEN_ID_BYTES)}
      AND (expires_at IS NULL OR expires_at > now())
    LIMIT 1
  ) t`;

/**
 * The same read with audit events appended in the same statement ($3… are the append's parameters): one
 * round trip and one commit for both, and the events are durable before any number is answered. Postgres runs the
 * append after the read, so a tenant's head is held only for the append, not for the read before it.
 */
export const READ_SEALED_AUDITED_SQL = `WITH RECURSIVE ${auditAppendCtes(3)}
  ${READ_SEALED_SQL}`;

/** Calls `row` for each row of READ_SEALED_SQL's packed answer; envelopes are views of `packed`. */
export function unpackSealed(packed: Buffer | null, row: (position: number, keyVersion: number, country: string | null, envelope: Buffer) => void): void {
  if (packed === null) return;
  let at = 0;
  while (at < packed.length) {
    const position = packed.readUInt32BE(at);
    const keyVersion = packed.readUInt32BE(at + 4);
    const countryLength = packed.readInt16BE(at + 8);
    at += 10;
    let country: string | null = null;
    if (countryLength >= 0) {
      country = packed.toString('utf8', at, at + countryLength);
      at += countryLength;
    }
    const envelopeLength = packed.readUInt32BE(at);
    at += 4;
    if (at + envelopeLength > packed.length) throw new Error('truncated sealed rows');
    row(position, keyVersion, country, packed.subarray(at, at + envelopeLength));
    at += envelopeLength;
  }
}

/** What detokenize needs of a row, and no more (no dates to parse on the hottest read). */
export interface SealedToken {
  tokenId: Buffer;
  keyVersion: number;
  envelope: Buffer;
  country: string | null;
}

/**
 * The hot paths. Concurrent inserts share one multi-row INSERT and one commit, and concurrent reads one
 * SELECT, whatever their tenants (src/store/batcher.ts): each job still gets exactly its own rows back, and a
 * job's rows are always in one statement, so each request's batch is stored whole or not at all.
 */
export function createTokensRepository(
  db: Db,
  options: { maxInFlight?: number; audit?: AuditRepository; onAuditApart?: (error: unknown) => void } = {},
) {
  // Measured on 2 cores: one flush in flight beats two or more (bigger batches, less Postgres CPU per row).
  const batching = { maxInFlight: options.maxInFlight ?? 1, maxItems: 5_000, directItems: 200 };

  /**
   * Runs a flush's statement with its requests' success events appended in the same statement (one round trip,
   * one commit). Should that fail for any reason but an unreachable database, the plain statement runs instead,
   * and the events are left to the answer's own path (src/http/audit.ts): a bad row and an audit trail that
   * cannot be written fail exactly as apart.
   */
  async function withEvents(events: AuditEvent[], auditedSql: string, plainSql: string, params: unknown[], name: string) {
    if (events.length > 0 && options.audit) {
      try {
        const rows = await options.audit.appendWith(events, async (appendParams) => {
          return (await db.query(auditedSql, [...params, ...appendParams], { prepare: `${name}_audited` })).rows as unknown[];
        });
        return { value: rows, recorded: true };
      } catch (error) {
        if (error instanceof StorageUnavailableError) throw error;
        options.onAuditApart?.(error);
      }
    }
    return { value: (await db.query(plainSql, params, { prepare: name })).rows as unknown[], recorded: false };
  }

  const insertBatch = createBatcher<InsertJob, { holders: Map<string, Buffer>; recorded: boolean }>(
    async (jobs) => {
      const rows = jobs.flatMap((job) => job.rows.map((row) => ({ tenant: job.tenant, ...row })));
      const envelopeWidth = rows[0]?.envelope.length ?? 0;
      const params = [
        rows.map((r) => r.tenant),
        packFixed(rows.map((r) => r.tokenId), TOKEN_ID_BYTES),
        rows.map((r) => r.keyVersion),
        packFixed(rows.map((r) => r.envelope), envelopeWidth),
        packFixed(rows.map((r) => r.fingerprint), FINGERPRINT_BYTES),
        rows.map((r) => r.deterministic),
        rows.map((r) => r.country),
        rows.map((r) => r.lineType),
        rows.map((r) => r.expiresAt),
        envelopeWidth,
      ];
      const events = jobs.flatMap((job) => (job.event ? [job.event] : []));
      const { value: inserted, recorded } = await withEvents(events, INSERT_TOKENS_AUDITED_SQL, INSERT_TOKENS_SQL, params, 'phonevault_insert_tokens');
      const stored = new Set((inserted as InsertedRow[]).map((row) => key(row.tenant_id, row.token_id)));
      return jobs.map((job) => {
        const holders = new Map<string, Buffer>();
        for (const row of job.rows) {
          if (row.deterministic && stored.has(key(job.tenant, row.tokenId))) holders.set(row.fingerprint.toString('hex'), row.tokenId);
        }
        return { holders, recorded: recorded && job.event !== undefined };
      });
    },
    (job) => job.rows.length,
    batching,
  );

  // Every token id is 16 bytes (src/crypto/tokens.ts), so a flush's ids travel as one packed bytea, sent in
  // binary, instead of an array literal of hex strings; rows are matched back by position (READ_SEALED_SQL).
  const readBatch = createBatcher<ReadJob, { rows: SealedToken[]; recorded: boolean }>(
    async (jobs) => {
      const tenants: string[] = [];
      const ids: Buffer[] = [];
      const owner: number[] = [];
      jobs.forEach((job, index) => {
        for (const id of job.tokenIds) {
          tenants.push(job.tenant);
          ids.push(id);
          owner.push(index);
        }
      });
      const params = [tenants, packFixed(ids, TOKEN_ID_BYTES)];
      const events = jobs.flatMap((job) => (job.event ? [job.event] : []));
      const { value, recorded } = await withEvents(events, READ_SEALED_AUDITED_SQL, READ_SEALED_SQL, params, 'phonevault_read_sealed');
      const answers: SealedToken[][] = jobs.map(() => []);
      unpackSealed((value as Array<{ packed: Buffer | null }>)[0]?.packed ?? null, (position, keyVersion, country, envelope) => {
        const index = position - 1;
        answers[owner[index]!]!.push({ tokenId: ids[index]!, keyVersion, envelope, country });
      });
      return answers.map((sealed, index) => ({ rows: sealed, recorded: recorded && jobs[index]!.event !== undefined }));
    },
    (job) => job.tokenIds.length,
    batching,
  );

  /**
   * The sealed numbers of the tenant's live (unexpired) tokens among these distinct ids, in no particular order.
   * With an audit event (and an audit repository), it resolves only once the event is committed, with the read.
   */
  const findSealed = (tenant: string, tokenIds: Buffer[], event?: AuditEvent): Promise<{ rows: SealedToken[]; recorded: boolean }> => {
    if (event && !options.audit) throw new Error('an audited read needs the audit repository');
    return readBatch({ tenant, tokenIds, event });
  };

  return {
    /**
     * Stores every row in one statement: all or none. A deterministic row whose number already has a token
     * is skipped; the answer maps each stored deterministic row's fingerprint (hex) to its token id.
     */
    insert: (tenant: string, rows: NewTokenRow[], event?: AuditEvent): Promise<{ holders: Map<string, Buffer>; recorded: boolean }> => {
      if (event && !options.audit) throw new Error('an audited insert needs the audit repository');
      return insertBatch({ tenant, rows, event });
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

    findSealed,

    /** One live token's row, for its metadata. */
    async findLiveOne(tenant: string, tokenId: Buffer): Promise<StoredToken | null> {
      const result = await db.query<TokenRow>(
        `SELECT token_id, key_version, envelope, deterministic, country, line_type, created_at, expires_at
         FROM tokens WHERE tenant_id = $1 AND token_id = $2 AND (expires_at IS NULL OR expires_at > now())`,
        [tenant, tokenId],
      );
      const [row] = result.rows;
      return row ? toStoredToken(row) : null;
    },
  };
}

export interface RewrapRow {
  tokenId: Buffer;
  keyVersion: number;
  envelope: Buffer;
}

/** Token maintenance: erasure, lookup by fingerprint, re-wrap and expiry. Every query is tenant-scoped but the sweep. */
export function createTokenMaintenance(db: Db) {
  return {
    async findLiveByFingerprint(tenant: string, fingerprint: Buffer): Promise<Buffer[]> {
      const result = await db.query<{ token_id: Buffer }>(
        `SELECT token_id FROM tokens WHERE tenant_id = $1 AND fingerprint = $2 AND (expires_at IS NULL OR expires_at > now())
         ORDER BY created_at, token_id`,
        [tenant, fingerprint],
      );
      return result.rows.map((row) => row.token_id);
    },

    async deleteToken(tenant: string, tokenId: Buffer): Promise<boolean> {
      const result = await db.query('DELETE FROM tokens WHERE tenant_id = $1 AND token_id = $2 AND (expires_at IS NULL OR expires_at > now())', [tenant, tokenId]);
      return result.rowCount === 1;
    },

    async deleteByFingerprint(tenant: string, fingerprint: Buffer): Promise<number> {
      return (await db.query('DELETE FROM tokens WHERE tenant_id = $1 AND fingerprint = $2', [tenant, fingerprint])).rowCount;
    },

    /** Tokens not under `activeVersion`, after `afterId` in id order: one page of a re-wrap. */
    async pageForRewrap(tenant: string, activeVersion: number, afterId: Buffer, limit: number): Promise<RewrapRow[]> {
      const result = await db.query<{ token_id: Buffer; key_version: number; envelope: Buffer }>(
        `SELECT token_id, key_version, envelope FROM tokens
         WHERE tenant_id = $1 AND token_id > $3 AND key_version <> $2
         ORDER BY token_id LIMIT $4`,
        [tenant, activeVersion, afterId, limit],
      );
      return result.rows.map((row) => ({ tokenId: row.token_id, keyVersion: row.key_version, envelope: row.envelope }));
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

    async countByVersion(tenant: string): Promise<Map<number, number>> {
      const result = await db.query<{ key_version: number; n: string }>(
        'SELECT key_version, count(*) AS n FROM tokens WHERE tenant_id = $1 GROUP BY key_version',
        [tenant],
      );
      return new Map(result.rows.map((row) => [row.key_version, Number(row.n)]));
    },

    /** Deletes up to `limit` expired tokens of any tenant; short statements, so the sweep never holds locks long. */
    async sweepExpired(limit: number): Promise<number> {
      const result = await db.query(
        `DELETE FROM tokens WHERE (tenant_id, token_id) IN (
           SELECT tenant_id, token_id FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= now() LIMIT $1)`,
        [limit],
      );
      return result.rowCount;
    },

    async deleteTenantPage(tenant: string, limit: number): Promise<number> {
      const result = await db.query(
        `DELETE FROM tokens WHERE tenant_id = $1 AND token_id IN (SELECT token_id FROM tokens WHERE tenant_id = $1 LIMIT $2)`,
        [tenant, limit],
      );
      return result.rowCount;
    },
  };
}

export type TokenMaintenance = ReturnType<typeof createTokenMaintenance>;

export type TokensRepository = ReturnType<typeof createTokensRepository>;
