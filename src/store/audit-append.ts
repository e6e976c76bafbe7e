import { chainEvents, type AuditEvent, type ChainLink } from '../audit/chain.js';
import { EVENT_COLUMNS } from './audit-reads.js';
import { statement, type Statement } from './sql.js';

// The append, as common table expressions to put before a statement's own: move the tenant's head past the
// events, from where their chain started, and insert them, failing the whole statement (a division by zero) unless
// the head still was where the chain started. Every statement names one tenant, so that a distributed Postgres
// routes each to one shard.
const APPEND_CTES = `audit_advanced AS (
    UPDATE audit_heads SET seq = :head_seq, hash = :head_hash
    WHERE tenant_id = :tenant AND seq = :from_seq AND hash = :from_hash
    RETURNING 1
  ), audit_appended AS (
    INSERT INTO audit_events (${EVENT_COLUMNS})
    SELECT :tenant, * FROM unnest(:event_seqs::bigint[], :event_times::timestamptz[], :event_clients::text[], :event_actions::text[],
      :event_items::int[], :event_outcomes::text[], :event_request_ids::text[], :event_purposes::text[], :event_hashes::bytea[])
    WHERE (SELECT 1 / count(*) FROM audit_advanced)::int = 1
  )`;
type AppendName =
  | 'tenant'
  | 'head_seq'
  | 'head_hash'
  | 'from_seq'
  | 'from_hash'
  | 'event_seqs'
  | 'event_times'
  | 'event_clients'
  | 'event_actions'
  | 'event_items'
  | 'event_outcomes'
  | 'event_request_ids'
  | 'event_purposes'
  | 'event_hashes';

/**
 * The append as two statements of its own, for a distributed Postgres, which cannot route the CTEs above to one
 * worker (it runs each as a step of its own and ships their results to every worker): move the head, then insert
 * the events, each routed to the tenant's worker. The head's move says by its row count whether it was still
 * where the chain started.
 */
export const ADVANCE_HEAD = statement<'tenant' | 'head_seq' | 'head_hash' | 'from_seq' | 'from_hash'>(
  'UPDATE audit_heads SET seq = :head_seq, hash = :head_hash WHERE tenant_id = :tenant AND seq = :from_seq AND hash = :from_hash',
);
/**
 * The events' insert as rows of VALUES, one parameter a field: Citus routes that to the tenant's worker as it is,
 * where an INSERT … SELECT from unnest goes through the coordinator (3× the time a statement on this machine).
 */
export function insertEventsStatements(values: Record<AppendName, unknown>): Array<{ text: string; params: unknown[] }> {
  const columns = ['event_seqs', 'event_times', 'event_clients', 'event_actions', 'event_items', 'event_outcomes', 'event_request_ids', 'event_purposes', 'event_hashes'] as const;
  const casts = ['bigint', 'timestamptz', 'text', 'text', 'int', 'text', 'text', 'text', 'bytea'];
  const count = (values.event_seqs as unknown[]).length;
  const statements: Array<{ text: string; params: unknown[] }> = [];
  // At most EVENTS_A_STATEMENT rows a statement: Citus plans a long VALUES list slowly (7,000 rows ran past the
  // statement timeout here), and 9 parameters a row must stay under Postgres's 65,535 anyway.
  for (let start = 0; start < count; start += EVENTS_A_STATEMENT) {
    const params: unknown[] = [values.tenant];
    const rows: string[] = [];
    for (let row = start; row < Math.min(count, start + EVENTS_A_STATEMENT); row++) {
      const placeholders = columns.map((column, c) => `$${params.push((values[column] as unknown[])[row])}::${casts[c]}`);
      rows.push(`($1, ${placeholders.join(', ')})`);
    }
    statements.push({ text: `INSERT INTO audit_events (${EVENT_COLUMNS}) VALUES ${rows.join(', ')}`, params });
  }
  return statements;
}

const EVENTS_A_STATEMENT = 1_000;

/** A statement of the caller's that carries the append when there are events to record, and runs alone if not. */
export interface AuditedStatement<Names extends string, Row = unknown> {
  name: string;
  withAppend: Statement<Names | AppendName>;
  alone: Statement<Names>;
  /** Only carries the row type of the answer. */
  row?: Row;
}

/** `WITH <append>, <ctes> <main>`: the caller's own CTEs (may be empty) and main statement, with named parameters. */
export function auditedStatement<Names extends string, Row>(name: string, ctes: string, main: string): AuditedStatement<Names, Row> {
  return {
    name,
    withAppend: statement(`WITH ${APPEND_CTES}${ctes ? `, ${ctes}` : ''}
${main}`),
    alone: statement(`${ctes ? `WITH ${ctes}
` : ''}${main}`),
  };
}

/** The append's named values: the events chained under `key` from `from`, and the head they leave. */
export function appendValues(key: Buffer, tenant: string, from: ChainLink, events: AuditEvent[]): { values: Record<AppendName, unknown>; head: ChainLink } {
  const { links, head } = chainEvents(key, from, events);
  return {
    head,
    values: {
      tenant,
      head_seq: head.seq,
      head_hash: head.hash,
      from_seq: from.seq,
      from_hash: from.hash,
      event_seqs: links.map((link) => link.seq),
      event_times: events.map((e) => e.occurredAt),
      event_clients: events.map((e) => e.client),
      event_actions: events.map((e) => e.action),
      event_items: events.map((e) => e.items),
      event_outcomes: events.map((e) => e.outcome),
      event_request_ids: events.map((e) => e.requestId),
      event_purposes: events.map((e) => e.purpose),
      event_hashes: links.map((link) => link.hash),
    },
  };
}
