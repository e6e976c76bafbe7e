import { CHAIN_HASH_BYTES, chainHash, GENESIS_HASH, type AuditEvent, type ChainedEvent } from '../audit/chain.js';
import { createBatcher } from './batcher.js';
import { packedAt, packFixed } from './packed.js';
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

const UNIQUE_VIOLATION = '23505';
// decode() rather than a '\x…' literal, which would read otherwise under standard_conforming_strings = off.
const GENESIS_SQL = `decode('${GENESIS_HASH.toString('hex')}', 'hex')`;

/**
 * The append, as common table expressions for a statement of one's own (its 15 parameters numbered from
 * `offset`, as `chain` below builds them), ending in `appended(moved)`: the tenants whose heads had moved. The
 * events were chained in the vault from the heads it last saw; here those heads are locked (in tenant order, so
 * that no two appends deadlock) and compared, and only if none moved meanwhile (another instance appended) are
 * the events inserted and the heads advanced. A tenant's first events race nobody's lock: should two instances
 * start a chain at once, the second's insert meets the first's seq 1 in the primary key and fails whole. One
 * plain statement rather than a call to migrations/003's `audit_append` (kept for instances of earlier
 * releases), whose five statements cost the database about twice the time; times travel as epoch
 * milliseconds and hashes packed, which costs the vault less to encode than timestamps and hex.
 */
export function auditAppendCtes(offset: number): string {
  const $ = (n: number) => `$${offset + n}`;
  return `audit_locked AS (
      SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id = ANY (${$(10)}::text[]) ORDER BY tenant_id FOR UPDATE),
    audit_moved AS (
      SELECT u.tenant_id FROM unnest(${$(10)}::text[], ${$(11)}::bigint[]) WITH ORDINALITY AS u(tenant_id, seq, i)
        LEFT JOIN audit_locked h ON h.tenant_id = u.tenant_id
      WHERE coalesce(h.seq, 0) <> u.seq OR coalesce(h.hash, ${GENESIS_SQL}) <> ${packedAt($(12), 'u.i', CHAIN_HASH_BYTES)}),
    audit_inserted AS (
      INSERT INTO audit_events (tenant_id, seq, occurred_at, client, action, items, outcome, request_id, purpose, hash)
      SELECT u.tenant_id, u.seq, timestamptz 'epoch' + u.at * interval '1 millisecond', u.client, u.action, u.items, u.outcome,
        u.request_id, u.purpose, ${packedAt($(9), 'u.i', CHAIN_HASH_BYTES)}
      FROM unnest(${$(0)}::text[], ${$(1)}::bigint[], ${$(2)}::bigint[], ${$(3)}::text[], ${$(4)}::text[], ${$(5)}::int[], ${$(6)}::text[], ${$(7)}::text[], ${$(8)}::text[])
        WITH ORDINALITY AS u(tenant_id, seq, at, client, action, items, outcome, request_id, purpose, i)
      WHERE NOT EXISTS (SELECT FROM audit_moved)),
    audit_advanced AS (
      INSERT INTO audit_heads (tenant_id, seq, hash)
      SELECT u.tenant_id, u.seq, ${packedAt($(14), 'u.i', CHAIN_HASH_BYTES)} FROM unnest(${$(10)}::text[], ${$(13)}::bigint[]) WITH ORDINALITY AS u(tenant_id, seq, i)
      WHERE NOT EXISTS (SELECT FROM audit_moved)
      ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash),
    appended AS (SELECT coalesce(array_agg(tenant_id), '{}') AS moved FROM audit_moved)`;
}

/**
 * Appends events to each tenant's hash chain. Concurrent appends share one transaction (src/store/batcher.ts):
 * the tenants' chain heads are locked, the new events chained in order, inserted, and the heads moved on, so
 * that instances appending to one tenant at once still build a single chain.
 */
export function createAuditRepository(db: Db) {
  // The chain heads as this instance last wrote or read them (see `exclusively` below).
  const heads = new Map<string, { seq: number; hash: Buffer }>();

  async function reloadHeads(tenants: string[]): Promise<void> {
    const result = await db.query<{ tenant_id: string; seq: string; hash: Buffer }>(
      'SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id = ANY($1::text[])',
      [tenants],
    );
    for (const tenant of tenants) heads.delete(tenant);
    for (const row of result.rows) heads.set(row.tenant_id, { seq: Number(row.seq), hash: row.hash });
  }

  /** The events chained from the known heads, as the append's 15 parameters, and the heads they lead to. */
  function chain(events: AuditEvent[]): { params: unknown[]; next: Map<string, { seq: number; hash: Buffer }> } {
    const tenants = [...new Set(events.map((e) => e.tenant))].sort();
    const previous = new Map(tenants.map((t) => [t, heads.get(t) ?? { seq: 0, hash: GENESIS_HASH }]));
    const next = new Map(previous);
    const seqs: number[] = [];
    const hashes: Buffer[] = [];
    for (const event of events) {
      const head = next.get(event.tenant)!;
      const seq = head.seq + 1;
      const hash = chainHash(head.hash, seq, event);
      next.set(event.tenant, { seq, hash });
      seqs.push(seq);
      hashes.push(hash);
    }
    const params = [
      events.map((e) => e.tenant),
      seqs,
      events.map((e) => e.occurredAt.getTime()),
      events.map((e) => e.client),
      events.map((e) => e.action),
      events.map((e) => e.items),
      events.map((e) => e.outcome),
      events.map((e) => e.requestId),
      events.map((e) => e.purpose),
      packFixed(hashes, CHAIN_HASH_BYTES),
      tenants,
      tenants.map((t) => previous.get(t)!.seq),
      packFixed(tenants.map((t) => previous.get(t)!.hash), CHAIN_HASH_BYTES),
      tenants.map((t) => next.get(t)!.seq),
      packFixed(tenants.map((t) => next.get(t)!.hash), CHAIN_HASH_BYTES),
    ];
    return { params, next };
  }

  /**
   * One append at a time per tenant chain in this instance (the batch below, or a read or insert carrying its
   * events), so that this instance never races itself; appends to other tenants' chains go on meanwhile. A head
   * another instance moved is caught by the append (auditAppendCtes), re-read, and chained again.
   * A flush queues for all of its tenants at once, synchronously, so no two flushes can wait for each other.
   */
  const tails = new Map<string, Promise<unknown>>();
  function exclusively<T>(events: AuditEvent[], fn: () => Promise<T>): Promise<T> {
    const tenants = [...new Set(events.map((event) => event.tenant))];
    const run = Promise.all(tenants.map((tenant) => tails.get(tenant))).then(fn);
    const settled = run.catch(() => undefined);
    for (const tenant of tenants) tails.set(tenant, settled);
    void settled.then(() => {
      for (const tenant of tenants) if (tails.get(tenant) === settled) tails.delete(tenant);
    });
    return run;
  }

  /** Runs a statement that appends the chained events; moves the heads if it appended. */
  async function chainedRun<T>(events: AuditEvent[], run: (params: unknown[]) => Promise<{ moved: string[]; value: T }>): Promise<{ moved: string[]; value: T }> {
    const { params, next } = chain(events);
    let outcome;
    try {
      outcome = await run(params);
    } catch (error) {
      for (const tenant of next.keys()) heads.delete(tenant);
      throw error;
    }
    if (outcome.moved.length === 0) for (const [tenant, head] of next) heads.set(tenant, head);
    return outcome;
  }

  const appendOnce = (events: AuditEvent[]) =>
    chainedRun(events, async (params) => {
      const result = await db.query<{ moved: string[] }>(`WITH ${auditAppendCtes(1)} SELECT moved FROM appended`, params, { prepare: 'phonevault_audit_append' });
      return { moved: result.rows[0]?.moved ?? [], value: undefined };
    });

  async function appendUntilChained(events: AuditEvent[]): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      let moved: string[];
      try {
        ({ moved } = await appendOnce(events));
      } catch (error) {
        // Another instance started one of these chains at the same moment (auditAppendCtes): read it, go on from it.
        if ((error as { code?: unknown }).code !== UNIQUE_VIOLATION) throw error;
        moved = [...new Set(events.map((event) => event.tenant))];
      }
      if (moved.length === 0) return;
      await reloadHeads(moved);
    }
    throw new Error('audit chain heads kept moving');
  }

  const appendBatch = createBatcher<AuditEvent[], void>(
    async (jobs) => {
      const events = jobs.flat();
      await exclusively(events, () => appendUntilChained(events));
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
     * `auditAppendCtes(offset)` and answers its `moved`, so that the events are committed with the
     * statement's own work in one round trip. `appended` is false when another instance had moved a head
     * meanwhile: the statement's work stands, but the events were not written and must be appended anew.
     */
    appendWith<T>(events: AuditEvent[], run: (params: unknown[]) => Promise<{ moved: string[]; value: T }>): Promise<{ value: T; appended: boolean }> {
      return exclusively(events, async () => {
        const { moved, value } = await chainedRun(events, run);
        if (moved.length > 0) await reloadHeads(moved);
        return { value, appended: moved.length === 0 };
      });
    },

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
