import type { Logger } from 'pino';
import { GENESIS_HASH, type AuditEvent, type ChainLink } from '../audit/chain.js';
import { AuditUnavailable, StorageUnavailableError } from '../errors.js';
import { ADVANCE_HEAD, appendValues, auditedStatement, insertEventsStatements, type AuditedStatement } from './audit-append.js';
import { settleAll, type Db, type Transaction } from './db.js';
import { bind } from './sql.js';

export { AuditUnavailable } from '../errors.js';
export { auditedStatement, type AuditedStatement } from './audit-append.js';

// The longest a commit waits for the tenant's previous one in this process before going to Postgres anyway.
const TURN_WAIT_MS = 1_000;

/** What a piece of audited work gives back: its value, and the events that record it. */
export interface Recorded<T> {
  value: T;
  events: AuditEvent[];
}

const APPEND_ALONE = auditedStatement<never, unknown>('pv_audit_append', '', 'SELECT 1');
const LOCK_HEAD = 'SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE';
const LAST_EVENT = 'SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1';
const SEED_HEAD = 'INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING';

// What an append from a known head answers when the head had moved: it did not match, another writer's events
// took the seqs, or the two writers deadlocked on each other's rows. Nothing was committed either way.
const HEAD_MOVED = new Set(['22012', '23505', '40P01']);

class HeadMoved extends Error {}
/** A combined statement failed from a known head for a reason it cannot tell apart: run again, from a locked head. */
class Unattributed extends Error {}

const HEAD_MISSING = 'the tenant has no audit head';
/** After another writer moved a tenant's head, its appends lock the head first for this long. */
const CONTENDED_MS = 1_000;
const MAX_TENANTS = 100_000;

export interface CommitOptions {
  hot?: boolean;
  /**
   * false for a commit that may be made from inside another commit's work of its tenant (the keyring's: a tenant's
   * first keys, a rotation when a key's budget runs out), which must not wait in the queue for the commit waiting
   * on it. An explicit flag rather than an AsyncLocalStorage: on Node 20 one of those turns on promise hooks for
   * every promise in the process, about 5% of a detokenize's CPU.
   */
  queued?: boolean;
}

export interface AuditLogOptions {
  /** The key events are chained under (src/store/audit-key.ts). */
  key: Buffer;
  logger?: Logger;
  /** Told of every head the log commits, for the checkpoints written outside the database. */
  onAdvance?: (tenant: string, head: ChainLink, appended: number) => void;
  /**
   * The database is distributed (src/store/distribute.ts): the append goes as statements of its own beside the
   * work's, in one transaction, since the combined statement's CTEs would touch every worker (audit-append.ts).
   */
  distributed?: boolean;
}

/**
 * The audit trail's one way in. `commit` runs a piece of work and appends the events it returns in one
 * transaction: the work's reads and writes are committed with their events, or neither is. There is no other way
 * to append and no way to do audited work without it.
 *
 * The events are chained from the tenant's head as this instance last committed it, and everything (the work, the
 * events, the head's move) goes in one pipelined round trip; should the head have moved meanwhile (another
 * instance appended), that transaction fails whole and the work runs again in one that locks the head after it.
 * Either way whoever holds the head appends next, so any number of instances appending to one tenant build one
 * chain; an instance alone on a tenant never waits for a lock's answer.
 */
export function createAuditLog(db: Db, options: AuditLogOptions) {
  // Tenants known to have a head row (which the lock needs), each seeded once per instance before its first append.
  const seeded = new Set<string>();
  // Where each tenant's head stood after this instance's last commit, and tenants whose heads others move.
  const heads = new Map<string, ChainLink>();
  const contendedUntil = new Map<string, number>();

  async function seed(tenant: string): Promise<void> {
    if (seeded.has(tenant)) return;
    const last = (await db.query<{ seq: string; hash: Buffer }>(LAST_EVENT, [tenant])).rows[0];
    const created = await db.query(SEED_HEAD, [tenant, last ? Number(last.seq) : 0, last?.hash ?? GENESIS_HASH]);
    // A tenant with events but no head lost its head row: the chain resumes where its events end, and verification,
    // which checks the head against the checkpoints, is the place where a rewound chain shows.
    if (created.rowCount === 1 && last) options.logger?.warn({ tenant }, 'audit head was missing; resumed from the last event');
    if (seeded.size >= MAX_TENANTS) seeded.clear();
    seeded.add(tenant);
  }

  const remember = (tenant: string, head: ChainLink) => {
    if (heads.size >= MAX_TENANTS && !heads.has(tenant)) heads.clear();
    heads.set(tenant, head);
  };

  const codeOf = (error: unknown) => (error as { code?: unknown } | null)?.code;

  /**
   * Where a chain starts: the head as this instance last committed it, or the head locked in this transaction by
   * `lock`, which the work calls once its own statements are sent: the head is locked after the work's rows in
   * every path, so two writers never wait on each other's rows and head.
   */
  type Start = { known: ChainLink } | { lock: () => Promise<ChainLink> };
  type Outcome<T> = { value: T; head: ChainLink | null; appended: number };

  const lockHead = (tx: Transaction, tenant: string): Promise<ChainLink> => {
    const locked = tx.query<{ seq: string; hash: Buffer }>(LOCK_HEAD, [tenant], { prepare: 'pv_audit_lock' }).then(
      ({ rows: [row] }) => {
        if (!row) throw new AuditUnavailable(new Error(HEAD_MISSING));
        return { seq: Number(row.seq), hash: row.hash };
      },
      (error: unknown) => {
        throw error instanceof StorageUnavailableError ? error : new AuditUnavailable(error);
      },
    );
    locked.catch(() => undefined);
    return locked;
  };

  // Heads only move forward: one behind where this instance left it was rewound outside the vault. The append
  // goes on from there (refusing would only stop the trail); verification against the checkpoints finds the gap.
  const noticeRewind = (tenant: string, known: ChainLink | undefined, head: ChainLink): ChainLink => {
    if (known && head.seq < known.seq) options.logger?.error({ tenant, seq: head.seq, expectedAtLeast: known.seq }, 'audit head moved backwards: the trail was rewound outside the vault');
    return head;
  };

  /**
   * Runs `run` from the head this instance last committed, if it holds one and nobody else moved it lately;
   * should the head have moved, `run` runs again from the head locked after its work. `single` work needs no transaction
   * of its own from a known head: one statement, committed by itself.
   */
  async function withHead<T>(tenant: string, mode: { hot: boolean; single: boolean }, run: (tx: Transaction, start: Start) => Promise<Outcome<T>>): Promise<T> {
    await seed(tenant).catch((error: unknown) => {
      throw error instanceof StorageUnavailableError ? error : new AuditUnavailable(error);
    });
    const known = heads.get(tenant);
    let outcome: Outcome<T> | null = null;
    try {
      if (known && (contendedUntil.get(tenant) ?? 0) < Date.now()) {
        try {
          outcome = mode.single
            ? await run({ query: (text, values, queryOptions) => db.query(text, values, queryOptions), beforeCommit: () => Promise.reject(new Error('no transaction')) }, { known })
            : await db.transact((tx) => run(tx, { known }), { hot: mode.hot });
        } catch (error) {
          // Writers that raced on one head may deadlock wherever they meet; from a known head, that is a move too.
          const moved = error instanceof HeadMoved || codeOf(error) === '40P01';
          if (!moved && !(error instanceof Unattributed)) throw error;
          if (moved) {
            if (contendedUntil.size >= MAX_TENANTS) contendedUntil.clear();
            contendedUntil.set(tenant, Date.now() + CONTENDED_MS);
          }
        }
      }
      outcome ??= await db.transact((tx) => run(tx, { lock: () => lockHead(tx, tenant).then((head) => noticeRewind(tenant, known, head)) }), { hot: mode.hot });
    } catch (error) {
      seeded.delete(tenant);
      heads.delete(tenant);
      throw error;
    }
    if (outcome.head) remember(tenant, outcome.head);
    if (outcome.head && outcome.appended > 0) options.onAdvance?.(tenant, outcome.head, outcome.appended);
    return outcome.value;
  }

  /** Appends `events` chained from `from` with a statement (or, distributed, two) of their own; its failure is the trail's. */
  async function appendAlone(q: Transaction, tenant: string, from: ChainLink, fromKnown: boolean, events: AuditEvent[]): Promise<ChainLink> {
    const { values, head } = appendValues(options.key, tenant, from, events);
    try {
      if (!options.distributed) {
        await q.query(APPEND_ALONE.withAppend.text, bind(APPEND_ALONE.withAppend, values), { prepare: APPEND_ALONE.name });
        return head;
      }
      // The events only once the head has moved: Citus reports their insert's duplicate seqs as XX000, not 23505.
      if ((await q.query(ADVANCE_HEAD.text, bind(ADVANCE_HEAD, values), { prepare: 'pv_audit_advance' })).rowCount === 1) {
        for (const inserted of insertEventsStatements(values)) await q.query(inserted.text, inserted.params);
        return head;
      }
    } catch (error) {
      const code = codeOf(error);
      if (fromKnown && typeof code === 'string' && HEAD_MOVED.has(code)) throw new HeadMoved();
      throw error instanceof StorageUnavailableError ? error : new AuditUnavailable(error);
    }
    // The head was not where the chain started (the transaction rolls back with the events).
    if (fromKnown) throw new HeadMoved();
    throw new AuditUnavailable(new Error(HEAD_MISSING));
  }

  /**
   * Runs a piece of work and appends the events it returns in one transaction: its reads and writes are committed
   * with their events, or neither is. For the work of several statements (lookups, erasures, key operations).
   */
  function commit<T>(tenant: string, work: (tx: Transaction) => Promise<Recorded<T>>, commitOptions: CommitOptions = {}): Promise<T> {
    const now = () => commitNow(tenant, work, commitOptions);
    return commitOptions.queued === false ? now() : oneAtATime(tenant, now);
  }

  // A tenant's transactions all end on its head's lock. Run here one at a time, they wait in the process rather
  // than in Postgres, each holding a pooled connection: 50 concurrent idempotent tokenizes of one tenant held the
  // pool and ran into statement timeouts, and the breaker then answered 503 to every tenant.
  const queues = new Map<string, Promise<void>>();
  function oneAtATime<T>(tenant: string, run: () => Promise<T>): Promise<T> {
    const turn = turnAfter(queues.get(tenant)).then(run);
    const done = turn.then(
      () => undefined,
      () => undefined,
    );
    queues.set(tenant, done);
    void done.then(() => {
      if (queues.get(tenant) === done) queues.delete(tenant);
    });
    return turn;
  }

  /**
   * The previous commit's end, or TURN_WAIT_MS, whichever comes first. Work can wait on a commit queued behind it
   * by another way round (work holding a lock of its own that a commit holding the turn waits for; the keyring's
   * commits skip the queue for that reason): past the bound, the two meet on Postgres's lock, whose timeouts end it, as before
   * the queue existed, instead of waiting for ever in this process.
   */
  function turnAfter(previous: Promise<void> | undefined): Promise<void> {
    if (!previous) return Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, TURN_WAIT_MS)));
    return Promise.race([previous, bound]).finally(() => clearTimeout(timer));
  }

  function commitNow<T>(tenant: string, work: (tx: Transaction) => Promise<Recorded<T>>, commitOptions: CommitOptions): Promise<T> {
    return withHead(tenant, { hot: commitOptions.hot ?? false, single: false }, async (tx, start) => {
      const recorded = await work(tx);
      if (recorded.events.length === 0) return { value: recorded.value, head: 'known' in start ? start.known : null, appended: 0 };
      const chainStart = 'known' in start ? start.known : await start.lock();
      const head = await appendAlone(tx, tenant, chainStart, 'known' in start, recorded.events);
      return { value: recorded.value, head, appended: recorded.events.length };
    });
  }

  /**
   * Runs one statement of the caller's with the events appended by that very statement, from the head as last
   * known: one round trip and one commit for both, for the hot paths' reads and inserts. From a head locked
   * (another instance moved it, or it is not known yet), the statement and the append go one after the other in
   * a transaction, so that a failure is told apart as the work's or the trail's.
   */
  function execute<Names extends string, R>(tenant: string, events: AuditEvent[], audited: AuditedStatement<Names, R>, values: Record<Names, unknown>): Promise<{ rows: R[]; rowCount: number }> {
    const alone = () => bind(audited.alone, values);
    // A statement made for its rows (no name) is sent unprepared: its text changes with their count.
    const aloneOptions = audited.name ? { prepare: `${audited.name}_alone` } : {};
    if (options.distributed && events.length > 0) {
      // The work's statement, then the append's, in one transaction: the head is moved after the work's rows.
      return withHead(tenant, { hot: true, single: false }, async (tx, start) => {
        const result = tx.query<R>(audited.alone.text, alone(), aloneOptions);
        const from = 'known' in start ? Promise.resolve(start.known) : start.lock();
        await settleAll([result, from]);
        const head = await appendAlone(tx, tenant, await from, 'known' in start, events);
        return { value: await result, head, appended: events.length };
      });
    }
    // Its combined form would be its work alone: an unnamed statement carries no append (src/store/tokens/hot.ts).
    if (!audited.name && events.length > 0) throw new Error('an unnamed statement is appended beside only by a distributed log');
    return withHead(tenant, { hot: true, single: true }, async (tx, start) => {
      if (events.length === 0) return { value: await tx.query<R>(audited.alone.text, alone(), aloneOptions), head: null, appended: 0 };
      if ('known' in start) {
        const { values: appendNamed, head } = appendValues(options.key, tenant, start.known, events);
        try {
          const result = await tx.query<R>(audited.withAppend.text, bind(audited.withAppend, { ...values, ...appendNamed }), { prepare: audited.name });
          return { value: result, head, appended: events.length };
        } catch (error) {
          const code = codeOf(error);
          if (typeof code === 'string' && HEAD_MOVED.has(code)) throw new HeadMoved();
          if (error instanceof StorageUnavailableError) throw error;
          throw new Unattributed();
        }
      }
      const result = tx.query<R>(audited.alone.text, alone(), aloneOptions);
      const from = start.lock();
      await settleAll([result, from]);
      const head = await appendAlone(tx, tenant, await from, false, events);
      return { value: await result, head, appended: events.length };
    });
  }

  return {
    commit,
    execute,
    /** Whether the database is distributed: the hot paths then send their rows as VALUES (src/store/tokens/hot.ts). */
    distributed: options.distributed ?? false,

  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;
