import type { ChainedEvent, ChainLink } from '../audit/chain.js';
import type { Db, Queryable } from './db.js';

/** Where a tenant's chain stands and where its verification starts. */
export interface AuditHead extends ChainLink {
  anchorSeq: number;
  anchorHash: Buffer;
  keyedAfter: number;
  headMac: Buffer | null;
}

export interface AuditQuery {
  afterSeq?: number | undefined;
  limit: number;
  client?: string | undefined;
  action?: string | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

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

export const EVENT_COLUMNS = 'tenant_id, seq, occurred_at, client, action, items, outcome, request_id, purpose, hash';

/** The trail's reading side, and its retention: for `GET /v1/audit`, `audit verify`, `audit seal` and `audit prune`. */
export function createAuditReads(db: Db) {
  return {
    /** A page of the tenant's events, filtered, read through `q` (the transaction that records the read). */
    async list(tenant: string, query: AuditQuery, q: Queryable = db): Promise<ChainedEvent[]> {
      const result = await q.query<EventRow>(
        `SELECT ${EVENT_COLUMNS} FROM audit_events
         WHERE tenant_id = $1 AND seq > $2
           AND ($3::text IS NULL OR client = $3) AND ($4::text IS NULL OR action = $4)
           AND ($5::timestamptz IS NULL OR occurred_at >= $5) AND ($6::timestamptz IS NULL OR occurred_at < $6)
         ORDER BY seq LIMIT $7`,
        [tenant, query.afterSeq ?? 0, query.client ?? null, query.action ?? null, query.from ?? null, query.to ?? null, query.limit],
      );
      return result.rows.map(toEvent);
    },

    /** A page of the chain in seq order, for verification. */
    async chainPage(tenant: string, afterSeq: number, limit: number): Promise<ChainedEvent[]> {
      const result = await db.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [
        tenant,
        afterSeq,
        limit,
      ]);
      return result.rows.map(toEvent);
    },

    async head(tenant: string): Promise<AuditHead | null> {
      const result = await db.query<{ seq: string; hash: Buffer; anchor_seq: string; anchor_hash: Buffer; keyed_after: string; head_mac: Buffer | null }>(
        'SELECT seq, hash, anchor_seq, anchor_hash, keyed_after, head_mac FROM audit_heads WHERE tenant_id = $1',
        [tenant],
      );
      const row = result.rows[0];
      return row
        ? {
            seq: Number(row.seq),
            hash: row.hash,
            anchorSeq: Number(row.anchor_seq),
            anchorHash: row.anchor_hash,
            keyedAfter: Number(row.keyed_after),
            headMac: row.head_mac,
          }
        : null;
    },

    /** Every tenant the trail should cover: those with a head, with events or with keys. */
    async tenants(): Promise<string[]> {
      const result = await db.query<{ tenant_id: string }>(
        `SELECT tenant_id FROM audit_heads UNION SELECT DISTINCT tenant_id FROM audit_events UNION SELECT tenant_id FROM tenant_keys ORDER BY 1`,
      );
      return result.rows.map((row) => row.tenant_id);
    },

    /** Replaces the signature over a head's anchor and legacy boundary (prune and seal write it). */
    async signHead(tenant: string, mac: Buffer | null): Promise<void> {
      await db.query('UPDATE audit_heads SET head_mac = $2 WHERE tenant_id = $1', [tenant, mac]);
    },

    /**
     * Drops the tenant's events from before `cutoff` (a whole period), keeping the last dropped event's seq and
     * hash as the signed anchor the chain is verified from. The only delete the table's trigger lets through, and
     * one the serving role has no privilege for.
     */
    async prune(tenant: string, cutoff: Date, signAnchor: (anchor: ChainLink, keyedAfter: number) => Buffer): Promise<number> {
      return db.transact(async (tx) => {
        // SET LOCAL, not set_config(): on a distributed database the setting must reach the shards' triggers, and
        // Citus passes SET LOCAL on to the workers it opens in this transaction when told to (a no-op elsewhere).
        await tx.query(`SET LOCAL citus.propagate_set_commands = 'local'`);
        await tx.query(`SET LOCAL phonevault.audit_retention = 'on'`);
        const locked = (await tx.query<{ keyed_after: string }>('SELECT keyed_after FROM audit_heads WHERE tenant_id = $1 FOR UPDATE', [tenant])).rows[0];
        if (!locked) return 0;
        const anchor = (
          await tx.query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_events WHERE tenant_id = $1 AND occurred_at < $2 ORDER BY seq DESC LIMIT 1', [tenant, cutoff])
        ).rows[0];
        if (!anchor) return 0;
        const seq = Number(anchor.seq);
        const dropped = (await tx.query('DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2', [tenant, seq])).rowCount;
        const mac = signAnchor({ seq, hash: anchor.hash }, Number(locked.keyed_after));
        await tx.query('UPDATE audit_heads SET anchor_seq = $2, anchor_hash = $3, head_mac = $4 WHERE tenant_id = $1', [tenant, seq, anchor.hash, mac]);
        return dropped;
      });
    },
  };
}

export type AuditReads = ReturnType<typeof createAuditReads>;
