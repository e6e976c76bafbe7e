import type { AuditEvent } from '../../audit/chain.js';
import { StorageUnavailableError } from '../../errors.js';
import { FINGERPRINT_BYTES } from '../../crypto/fingerprint.js';
import { isPhoneShapedId, TOKEN_ID_BYTES } from '../../crypto/tokens.js';
import { auditedStatement, type AuditedStatement } from '../audit-append.js';
import type { AuditLog } from '../audit-log.js';
import { createBatcher } from '../batcher.js';
import type { Db, Queryable, Transaction } from '../db.js';
import { bind } from '../sql.js';
import { packedAt, packFixed } from '../packed.js';
import type { EnvelopeRow, NewToken, SealedToken } from './rows.js';

/**
 * A flush's rows, one tenant, one statement: all or none. A row whose id is taken, or a deterministic row whose
 * number already has a token of its shape, is skipped (no conflict target: every unique index arbitrates). Token ids (16 bytes apiece), envelopes (:envelope_width bytes apiece: src/crypto/number-envelope.ts
 * pads every number to one width) and fingerprints (32 bytes apiece) travel packed, one bytea each, sent in
 * binary: a 1000-row insert takes about a fifth less time than with bytea[] arrays, which the driver hex-encodes
 * and the server parses back element by element.
 */
const INSERT_TOKENS = auditedStatement<
  'tenant' | 'token_ids' | 'key_versions' | 'envelopes' | 'envelope_width' | 'fingerprints' | 'deterministic' | 'phone_shaped' | 'countries' | 'line_types' | 'expiries',
  { token_id: Buffer }
>(
  'pv_insert_tokens',
  `inserted AS (
    INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, phone_shaped, country, line_type, expires_at)
    SELECT :tenant, ${packedAt(':token_ids', 'u.i', TOKEN_ID_BYTES)}, u.key_version, ${packedAt(':envelopes', 'u.i', ':envelope_width::int')},
      ${packedAt(':fingerprints', 'u.i', FINGERPRINT_BYTES)}, u.deterministic, u.phone_shaped, u.country, u.line_type, u.expires_at
    FROM unnest(:key_versions::int[], :deterministic::bool[], :phone_shaped::bool[], :countries::text[], :line_types::text[], :expiries::timestamptz[])
      WITH ORDINALITY AS u(key_version, deterministic, phone_shaped, country, line_type, expires_at, i)
    ON CONFLICT DO NOTHING
    RETURNING token_id
  )`,
  'SELECT token_id FROM inserted',
);

// A larger flush takes the INSERT … SELECT, which Citus runs through the coordinator with a COPY. Citus plans a
// long VALUES list slowly: 7,000 rows took past the statement timeout here. The bind limit (65,535 parameters, 9
// a row) would stop it at 7,281 in any case.
const VALUES_MAX_ROWS = 1_000;

/**
 * The same insert as rows of VALUES, one parameter a field, for a distributed database: Citus routes it to the
 * tenant's worker as it is, where the INSERT … SELECT above goes through the coordinator (3× the time a statement
 * on this machine, src/store/audit-append.ts). Unnamed, so sent unprepared: its text changes with the row count.
 */
function insertAsValues(tenant: string, rows: NewToken[]): { statement: AuditedStatement<string, { token_id: Buffer }>; values: Record<string, unknown> } {
  const names = ['tenant'];
  const values: Record<string, unknown> = { tenant };
  const tuples = rows.map((row, i) => {
    const fields: Array<[unknown, string]> = [
      [row.tokenId, 'bytea'],
      [row.keyVersion, 'int'],
      [row.envelope, 'bytea'],
      [row.fingerprint, 'bytea'],
      [row.deterministic, 'bool'],
      [isPhoneShapedId(row.tokenId), 'bool'],
      [row.country, 'text'],
      [row.lineType, 'text'],
      [row.expiresAt, 'timestamptz'],
    ];
    return `($1, ${fields
      .map(([value, type], f) => {
        const name = `r${i}_${f}`;
        values[name] = value;
        return `$${names.push(name)}::${type}`;
      })
      .join(', ')})`;
  });
  const alone = {
    text: `INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, phone_shaped, country, line_type, expires_at)
    VALUES ${tuples.join(', ')} ON CONFLICT DO NOTHING RETURNING token_id`,
    names,
  };
  // Never sent with the combined append (the distributed log appends beside it): its one form serves both.
  return { statement: { name: '', alone, withAppend: alone }, values };
}

/** The insert of these rows as the log's database takes it best: rows of VALUES when distributed and few enough. */
function tokensInsert(auditLog: AuditLog, tenant: string, rows: NewToken[]): { statement: AuditedStatement<string, { token_id: Buffer }>; values: Record<string, unknown> } {
  return auditLog.distributed && rows.length <= VALUES_MAX_ROWS ? insertAsValues(tenant, rows) : { statement: INSERT_TOKENS, values: insertValues(tenant, rows) };
}

/** The deterministic tokens (of either shape) of these fingerprints: read after their insert, it sees every committed winner. */
const DETERMINISTIC_HOLDERS = `SELECT token_id, key_version, envelope, fingerprint, phone_shaped FROM tokens
  WHERE tenant_id = $1 AND deterministic AND fingerprint = ANY($2::bytea[])`;

/**
 * The sealed rows of a flush's ids (packed 16 bytes apiece), one primary-key probe per id whatever the
 * statistics say: the LIMIT keeps the planner from turning the lateral lookup into a join, which with stale
 * statistics (a table that just grew) became a hash join over a sequential scan, 20× slower
 * (test/store/read-plan.test.ts). The rows found come back packed into one value (`unpackSealed`), each as: the
 * 1-based position of its id (u32), key version (u32), fingerprint (32 bytes, which the envelope is bound to),
 * country length (i16, −1 for none) and bytes, envelope length (u32) and bytes. One value to decode instead of a
 * thousand rows of four fields: for a batch read, row decoding was a fifth of the event loop's time, and most of
 * its garbage. It travels as base64, not as bytea's hex text: a third fewer characters for the driver to decode
 * (pg reads every answer column as text).
 */
export const READ_SEALED = auditedStatement<'tenant' | 'ids', { packed: string | null }>(
  'pv_read_sealed',
  '',
  `SELECT encode(string_agg(
    int4send(g.i) || int4send(t.key_version) || t.fingerprint
      || int2send(coalesce(octet_length(t.country), -1)::int2) || coalesce(convert_to(t.country, 'UTF8'), ''::bytea)
      || int4send(octet_length(t.envelope)) || t.envelope,
    ''::bytea), 'base64') AS packed
  FROM generate_series(1, octet_length(:ids::bytea) / ${TOKEN_ID_BYTES}) AS g(i)
  CROSS JOIN LATERAL (
    SELECT key_version, envelope, fingerprint, country FROM tokens
    WHERE tenant_id = :tenant AND token_id = ${packedAt(':ids', 'g.i', TOKEN_ID_BYTES)} AND (expires_at IS NULL OR expires_at > now())
    LIMIT 1
  ) t`,
);

/** Calls `row` for each row of READ_SEALED's packed answer; envelopes are views of `packed`. */
export function unpackSealed(packed: Buffer | null, row: (position: number, keyVersion: number, fingerprint: Buffer, country: string | null, envelope: Buffer) => void): void {
  if (packed === null) return;
  let at = 0;
  while (at < packed.length) {
    const position = packed.readUInt32BE(at);
    const keyVersion = packed.readUInt32BE(at + 4);
    const fingerprint = packed.subarray(at + 8, at + 8 + FINGERPRINT_BYTES);
    const countryLength = packed.readInt16BE(at + 8 + FINGERPRINT_BYTES);
    at += 10 + FINGERPRINT_BYTES;
    let country: string | null = null;
    if (countryLength >= 0) {
      country = packed.toString('utf8', at, at + countryLength);
      at += countryLength;
    }
    const envelopeLength = packed.readUInt32BE(at);
    at += 4;
    if (at + envelopeLength > packed.length) throw new Error('truncated sealed rows');
    row(position, keyVersion, fingerprint, country, packed.subarray(at, at + envelopeLength));
    at += envelopeLength;
  }
}

/** Per row inserted: the token that holds its number (its own, or a deterministic winner's), or null if gone. */
export type Holder = EnvelopeRow | null;

interface InsertJob {
  tenant: string;
  rows: NewToken[];
  /** The request's events; none for a request's second attempt, which its first attempt's events already cover. */
  events: AuditEvent[];
}

interface ReadJob {
  tenant: string;
  tokenIds: Buffer[];
  events: AuditEvent[];
}

// A shared statement that failed with the storage still there may have failed for one job's rows or event.
const notStorage = (error: unknown) => !(error instanceof StorageUnavailableError);

// latin1 maps each byte to one character: the cheapest exact string form of an id or fingerprint for a Map key.
const keyOf = (bytes: Buffer) => bytes.toString('latin1');

/**
 * The hot paths, audited: concurrent inserts of one tenant share one transaction and one commit, and concurrent
 * reads one read, each with its requests' audit events appended in the same transaction (src/store/audit-log.ts).
 * Each job still gets exactly its own rows back, and a job's rows are always in one statement, so each request's
 * batch is stored whole or not at all, and never without its event.
 */
/** The insert's named values for a flush's rows, packed. */
function insertValues(tenant: string, rows: NewToken[]) {
  const envelopeWidth = rows[0]?.envelope.length ?? 0;
  return {
    tenant,
    token_ids: packFixed(rows.map((r) => r.tokenId), TOKEN_ID_BYTES),
    key_versions: rows.map((r) => r.keyVersion),
    envelopes: packFixed(rows.map((r) => r.envelope), envelopeWidth),
    envelope_width: envelopeWidth,
    fingerprints: packFixed(rows.map((r) => r.fingerprint), FINGERPRINT_BYTES),
    deterministic: rows.map((r) => r.deterministic),
    // The id says its shape; the column lets the unique index keep one deterministic token per number and shape.
    phone_shaped: rows.map((r) => isPhoneShapedId(r.tokenId)),
    countries: rows.map((r) => r.country),
    line_types: rows.map((r) => r.lineType),
    expiries: rows.map((r) => r.expiresAt),
  };
}

/**
 * The rows an insert may send: a second row with the id of an earlier one (two phone-shaped draws alike, one time
 * in 10^13 per pair) is held back, since the statement would skip one of the two while both ids come back as
 * stored. It gets no holder, so its request seals it again under another id, as for an id already taken.
 */
async function insertOnce(rows: NewToken[], insert: (sent: NewToken[]) => Promise<Holder[]>): Promise<Holder[]> {
  const seen = new Set<string>();
  const repeated = rows.map((row) => {
    const key = keyOf(row.tokenId);
    if (seen.has(key)) return true;
    seen.add(key);
    return false;
  });
  if (!repeated.includes(true)) return insert(rows);
  const holders = await insert(rows.filter((_, i) => !repeated[i]));
  let at = 0;
  return repeated.map((isRepeated) => (isRepeated ? null : holders[at++]!));
}

/** Per row, its holder (src/store/tokens/rows.ts): itself if stored, else a deterministic winner read once committed. */
async function holdersOf(q: Queryable, tenant: string, rows: NewToken[], inserted: Array<{ token_id: Buffer }>): Promise<Holder[]> {
  const stored = new Set(inserted.map((row) => keyOf(row.token_id)));
  const lost = rows.filter((row) => row.deterministic && !stored.has(keyOf(row.tokenId))).map((row) => row.fingerprint);
  const holders =
    lost.length > 0
      ? await q.query<{ token_id: Buffer; key_version: number; envelope: Buffer; fingerprint: Buffer; phone_shaped: boolean }>(DETERMINISTIC_HOLDERS, [tenant, lost], {
          prepare: 'pv_deterministic_holders',
        })
      : { rows: [] };
  const slotOf = (fingerprint: Buffer, phoneShaped: boolean) => keyOf(fingerprint) + (phoneShaped ? 'p' : 'o');
  const byFingerprint = new Map(holders.rows.map((row) => [slotOf(row.fingerprint, row.phone_shaped), row]));
  return rows.map((row): Holder => {
    if (stored.has(keyOf(row.tokenId))) return row;
    const holder = row.deterministic ? byFingerprint.get(slotOf(row.fingerprint, isPhoneShapedId(row.tokenId))) : undefined;
    return holder ? { tokenId: holder.token_id, keyVersion: holder.key_version, envelope: holder.envelope, fingerprint: holder.fingerprint } : null;
  });
}

/**
 * The hot paths, audited: concurrent inserts of one tenant share one transaction and one commit, and concurrent
 * reads one read, each with its requests' audit events appended in the same transaction (src/store/audit-log.ts).
 * Each job still gets exactly its own rows back, and a job's rows are always in one statement, so each request's
 * batch is stored whole or not at all, and never without its event.
 */
export function createTokensStore(db: Db, auditLog: AuditLog) {
  const insertBatch = createBatcher<InsertJob, Holder[]>(
    async (tenant, jobs) => {
      const rows = jobs.flatMap((job) => job.rows);
      const holders = await insertOnce(rows, async (sent) => {
        const events = jobs.flatMap((job) => job.events);
        const { statement, values } = tokensInsert(auditLog, tenant, sent);
        const inserted = await auditLog.execute(tenant, events, statement, values);
        // A deterministic row that was skipped has a winner: read once its insert is committed.
        return holdersOf(db, tenant, sent, inserted.rows);
      });
      let at = 0;
      return jobs.map((job) => holders.slice(at, (at += job.rows.length)));
    },
    { tenantOf: (job) => job.tenant, sizeOf: (job) => job.rows.length, maxItems: 5_000, isolate: notStorage },
  );

  const readBatch = createBatcher<ReadJob, SealedToken[]>(
    async (tenant, jobs) => {
      const ids = jobs.flatMap((job) => job.tokenIds);
      const owner = jobs.flatMap((job, index) => job.tokenIds.map(() => index));
      const answers: SealedToken[][] = jobs.map(() => []);
      const result = await auditLog.execute(tenant, jobs.flatMap((job) => job.events), READ_SEALED, {
        tenant,
        ids: packFixed(ids, TOKEN_ID_BYTES),
      });
      const packed = result.rows[0]?.packed;
      unpackSealed(packed ? Buffer.from(packed, 'base64') : null, (position, keyVersion, fingerprint, country, envelope) => {
        answers[owner[position - 1]!]!.push({ tokenId: ids[position - 1]!, keyVersion, envelope, fingerprint, country });
      });
      return answers;
    },
    { tenantOf: (job) => job.tenant, sizeOf: (job) => Math.max(1, job.tokenIds.length), maxItems: 5_000, isolate: notStorage },
  );

  return {
    /**
     * Stores the rows with their events, in one transaction: all or none. Per row, in order: the row itself if
     * stored, the token already holding its number if it is deterministic and one does, or null if neither (the
     * holder was erased between the insert and its read).
     */
    insert: (tenant: string, rows: NewToken[], events: AuditEvent[]): Promise<Holder[]> => insertBatch({ tenant, rows, events }),

    /** The same insert, in a transaction of the caller's that commits the events (an idempotent request's). */
    async insertWithin(tx: Transaction, tenant: string, rows: NewToken[]): Promise<Holder[]> {
      return insertOnce(rows, async (sent) => {
        const { statement, values } = tokensInsert(auditLog, tenant, sent);
        const inserted = await tx.query<{ token_id: Buffer }>(statement.alone.text, bind(statement.alone, values), statement.name ? { prepare: `${statement.name}_alone` } : {});
        return holdersOf(tx, tenant, sent, inserted.rows);
      });
    },

    /**
     * The sealed numbers of the tenant's live (unexpired) tokens among these distinct ids, in no particular order,
     * once the events are committed with the read.
     */
    readSealed: (tenant: string, tokenIds: Buffer[], events: AuditEvent[]): Promise<SealedToken[]> => readBatch({ tenant, tokenIds, events }),
  };
}

export type TokensStore = ReturnType<typeof createTokensStore>;
