import { chainEncodingAfterSeq, chainEncodingBeforeSeq, GENESIS_HASH, type AuditEvent, type ChainedEvent } from '../audit/chain.js';
import { createBatcher } from './batcher.js';
import type { Db } from './db.js';

interface EventRow {
  tenant_id: string;
  seq: string;
  occurred_at: Date;
  client: string;
  action: string;
  items: number;
  outcome: string;
  request_id: string | null;
  purpose: string | null;
  hash: Buffer;
}

const toEvent = (row: EventRow): ChainedEvent => ({
  tenant: row.tenant_id,
  seq: Number(row.seq),
  occurredAt: row.occurred_at,
  client: row.client,
  action: row.action,
  items: row.items,
  outcome: row.outcome,
  requestId: row.request_id,
  purpose: row.purpose,
  hash: row.hash,
});

export interface AuditQuery {
  afterSeq?: number | undefined;
  limit: number;
  client?: string | undefined;
  action?: string | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

// decode() rather than a '\x…' literal, which would read otherwise under standard_conforming_strings = off.
const GENESIS_SQL = `decode('${GENESIS_HASH.toString('hex')}', 'hex')`;

// chainHash (src/audit/chain.ts) in SQL, from the encodings either side of the seq that the vault sends (the
// tenant's `before`, the `pos`th of $after): the seq field is its decimal text after a u16 length (big-endian).
// Held equal to the vault's by every test that verifies a chain the database wrote, since verification recomputes
// each hash.
const chainedHashSql = (before: string, after: string, pos: string, seq: string) =>
  `sha256(hash || ${before} || substring(int4send(octet_length((${seq})::text)) FROM 3 FOR 2) || convert_to((${seq})::text, 'UTF8') || (${after}::bytea[])[${pos}])`;

/**
 * The append, as common table expressions for a statement of one's own that starts `WITH RECURSIVE` (its 13
 * parameters numbered from `offset`, as `appendParams` builds them). The tenants' chain heads are locked in
 * tenant order (so that no two appends deadlock), the events chained from them here, in the database, inserted,
 * and the heads advanced: whoever holds a head appends next, so instances appending to one tenant at once queue
 * on its row and never chain from a stale head. Each tenant's events are consecutive in the parameters (from
 * `first`, `n` of them), so the recursion steps through them by position, with no join. Every tenant must
 * already have a head row (`seedHeads`), since a missing one could not be locked; were one missing all the same,
 * its events would chain to a null seq and the insert fail whole (NOT NULL), rather than leave them out.
 * Data-modifying CTEs always run to completion, so a statement needs only to carry these; a plain read beside
 * them locks the heads only after it has read (Postgres runs the append at the end), which keeps a tenant's
 * appends queued for the append alone. Meant for the generic plan (src/store/db.ts runs prepared statements so).
 * One plain statement rather than a call to migrations/003's `audit_append` (kept for instances of earlier
 * releases, which chain in the vault and compare; they and this share one hash and one lock, so the two can
 * run side by side during an upgrade).
 */
export function auditAppendCtes(offset: number): string {
  const $ = (n: number) => `$${offset + n}`;
  return `audit_locked AS (
      SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id = ANY (${$(8)}::text[]) ORDER BY tenant_id FOR UPDATE),
    audit_chained (tenant_id, first, n, before, k, seq, hash) AS (
      SELECT t.tenant_id, t.first, t.n, t.before, 0, h.seq, h.hash
      FROM unnest(${$(8)}::text[], ${$(9)}::int[], ${$(10)}::int[], ${$(11)}::bytea[]) AS t(tenant_id, first, n, before)
        LEFT JOIN audit_locked h USING (tenant_id)
      UNION ALL
      SELECT tenant_id, first, n, before, k + 1, seq + 1, ${chainedHashSql('before', $(12), 'first + k', 'seq + 1')}
      FROM audit_chained WHERE k < n),
    audit_inserted AS (
      INSERT INTO audit_events (tenant_id, seq, occurred_at, client, action, items, outcome, request_id, purpose, hash)
      SELECT e.tenant_id, c.seq, timestamptz 'epoch' + e.at * interval '1 millisecond', e.client, e.action, e.items, e.outcome,
        e.request_id, e.purpose, c.hash
      FROM unnest(${$(0)}::text[], ${$(1)}::bigint[], ${$(2)}::text[], ${$(3)}::text[], ${$(4)}::int[], ${$(5)}::text[], ${$(6)}::text[], ${$(7)}::text[])
          WITH ORDINALITY AS e(tenant_id, at, client, action, items, outcome, request_id, purpose, i)
        JOIN audit_chained c ON c.k > 0 AND e.i = c.first + c.k - 1),
    audit_advanced AS (
      UPDATE audit_heads h SET seq = c.seq, hash = c.hash
      FROM audit_chained c WHERE h.tenant_id = c.tenant_id AND c.k = c.n AND c.n > 0)`;
}

/**
 * The append's 13 parameters for these events (auditAppendCtes): their fields, grouped by tenant (each tenant's
 * in their order); the tenants in order, where each one's events start, how many, and its hashed encoding before
 * the seq; then each event's hashed encoding after it.
 */
export function appendParams(unordered: AuditEvent[]): unknown[] {
  const byTenant = new Map<string, AuditEvent[]>();
  for (const event of unordered) {
    const own = byTenant.get(event.tenant);
    if (own) own.push(event);
    else byTenant.set(event.tenant, [event]);
  }
  const tenants = [...byTenant.keys()].sort();
  const events = tenants.flatMap((tenant) => byTenant.get(tenant)!);
  const counts = tenants.map((tenant) => byTenant.get(tenant)!.length);
  const firsts: number[] = [];
  let next = 1;
  for (const count of counts) {
    firsts.push(next);
    next += count;
  }
  return [
    events.map((e) => e.tenant),
    events.map((e) => e.occurredAt.getTime()),
    events.map((e) => e.client),
    events.map((e) => e.action),
    events.map((e) => e.items),
    events.map((e) => e.outcome),
    events.map((e) => e.requestId),
    events.map((e) => e.purpose),
    tenants,
    firsts,
    counts,
    tenants.map(chainEncodingBeforeSeq),
    events.map(chainEncodingAfterSeq),
  ];
}

/**
 * Appends events to each tenant's hash chain. Concurrent appends share one statement (src/store/batcher.ts);
 * the chaining itself happens under the heads' locks in the database (auditAppendCtes), so that any number of
 * instances appending to one tenant build a single chain.
 */
export function createAuditRepository(db: Db) {
  // Tenants known to have a head row: each is seeded once (at seq 0, the genesis hash) before its first append.
  const seeded = new Set<string>();
  const MAX_SEEDED = 100_000;

  async function seedHeads(events: AuditEvent[]): Promise<void> {
    const missing = [...new Set(events.map((e) => e.tenant))].filter((tenant) => !seeded.has(tenant));
    if (missing.length === 0) return;
    // From the tenant's last event when it has any (a head row that went missing resumes where the chain ends).
    await db.query(
      `INSERT INTO audit_heads (tenant_id, seq, hash)
       SELECT t, coalesce(last.seq, 0), coalesce(last.hash, ${GENESIS_SQL}) FROM unnest($1::text[]) t
         LEFT JOIN LATERAL (SELECT seq, hash FROM audit_events WHERE tenant_id = t ORDER BY seq DESC LIMIT 1) last ON true
       ON CONFLICT (tenant_id) DO NOTHING`,
      [missing],
    );
    if (seeded.size + missing.length > MAX_SEEDED) seeded.clear();
    for (const tenant of missing) seeded.add(tenant);
  }

  /** Runs a statement carrying these events' append; should it fail, their heads are seeded again next time. */
  async function appending<T>(events: AuditEvent[], run: (params: unknown[]) => Promise<T>): Promise<T> {
    await seedHeads(events);
    try {
      return await run(appendParams(events));
    } catch (error) {
      for (const event of events) seeded.delete(event.tenant);
      throw error;
    }
  }

  const appendBatch = createBatcher<AuditEvent[], void>(
    async (jobs) => {
      const events = jobs.flat();
      await appending(events, (params) => db.query(`WITH RECURSIVE ${auditAppendCtes(1)} SELECT 1`, params, { prepare: 'phonevault_audit_append_chained' }));
      return jobs.map(() => undefined);
    },
    (job) => job.length,
    { maxInFlight: 1, maxItems: 5_000 },
  );

  return {
    /** Resolves once the events are committed. */
    append: (events: AuditEvent[]): Promise<void> => (events.length === 0 ? Promise.resolve() : appendBatch(events)),

    /**
     * Runs `run` with the append's parameters for these events: a statement of the caller's that also holds
     * `auditAppendCtes(offset)`, so that the events are committed with the statement's own work in one round trip
     * and one commit, or not at all.
     */
    appendWith: appending,

    async list(tenant: string, query: AuditQuery): Promise<ChainedEvent[]> {
      const result = await db.query<EventRow>(
        `SELECT tenant_id, seq, occurred_at, client, action, items, outcome, request_id, purpose, hash FROM audit_events
         WHERE tenant_id = $1 AND seq > $2
           AND ($3::text IS NULL OR client = $3) AND ($4::text IS NULL OR action = $4)
           AND ($5::timestamptz IS NULL OR occurred_at >= $5) AND ($6::timestamptz IS NULL OR occurred_at < $6)
         ORDER BY seq LIMIT $7`,
        [tenant, query.afterSeq ?? 0, query.client ?? null, query.action ?? null, query.from ?? null, query.to ?? null, query.limit],
      );
      return result.rows.map(toEvent);
    },

    async tenants(): Promise<string[]> {
      return (await db.query<{ tenant_id: string }>('SELECT tenant_id FROM audit_heads ORDER BY tenant_id')).rows.map((row) => row.tenant_id);
    },

    async head(tenant: string): Promise<{ seq: number; hash: Buffer; anchorSeq: number; anchorHash: Buffer } | null> {
      const result = await db.query<{ seq: string; hash: Buffer; anchor_seq: string; anchor_hash: Buffer }>(
        'SELECT seq, hash, anchor_seq, anchor_hash FROM audit_heads WHERE tenant_id = $1',
        [tenant],
      );
      const row = result.rows[0];
      return row ? { seq: Number(row.seq), hash: row.hash, anchorSeq: Number(row.anchor_seq), anchorHash: row.anchor_hash } : null;
    },

    /** A page of the chain in seq order, for verification. */
    async chainPage(tenant: string, afterSeq: number, limit: number): Promise<ChainedEvent[]> {
      const result = await db.query<EventRow>(
        `SELECT tenant_id, seq, occurred_at, client, action, items, outcome, request_id, purpose, hash FROM audit_events
         WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
        [tenant, afterSeq, limit],
      );
      return result.rows.map(toEvent);
    },

    /**
     * Drops every tenant's events from before `cutoff` (a whole period), keeping the last dropped event's seq
     * and hash as the anchor the chain is verified from. The only delete the table's trigger lets through.
     */
    async prune(cutoff: Date): Promise<number> {
      return db.transact(async (tx) => {
        await tx.query(`SELECT set_config('phonevault.audit_retention', 'on', true)`);
        const anchors = await tx.query<{ tenant_id: string; seq: string; hash: Buffer }>(
          `SELECT DISTINCT ON (tenant_id) tenant_id, seq, hash FROM audit_events WHERE occurred_at < $1 ORDER BY tenant_id, seq DESC`,
          [cutoff],
        );
        let dropped = 0;
        for (const anchor of anchors.rows) {
          dropped += (await tx.query('DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2', [anchor.tenant_id, anchor.seq])).rowCount;
          await tx.query('UPDATE audit_heads SET anchor_seq = $2, anchor_hash = $3 WHERE tenant_id = $1', [anchor.tenant_id, anchor.seq, anchor.hash]);
        }
        return dropped;
      });
    },
  };
}

export type AuditRepository = ReturnType<typeof createAuditRepository>;
