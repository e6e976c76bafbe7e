import pg from 'pg';
import type { Logger } from 'pino';
import { StorageUnavailableError } from '../errors.js';
import { safeErrorFields } from '../logger.js';

export { StorageUnavailableError } from '../errors.js';

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface QueryOptions {
  /**
   * Prepares the statement once per connection under this name and then only binds and executes it: no
   * parse and no planning on every call, for the hot paths' fixed statements.
   */
  prepare?: string;
}

/** The one surface the repositories use, so that another Postgres (an embedded one) can stand in for pg. */
export interface Queryable {
  query<R = Record<string, unknown>>(text: string, values?: unknown[], options?: QueryOptions): Promise<QueryResult<R>>;
}

export interface Transaction extends Queryable {
  /**
   * A statement sent with the COMMIT rather than before it (one round trip for both): its failure rolls the whole
   * transaction back, and transact() then throws it. The promise is its own outcome, already observed.
   */
  beforeCommit(text: string, values: unknown[], options?: QueryOptions): Promise<unknown>;
}

export interface TransactOptions {
  /** On the hot paths' connections: prepared statements always on their generic plan, queries pipelined. */
  hot?: boolean;
}

export interface Db extends Queryable {
  /** Runs fn in one transaction: commit on success, rollback on any error, the connection always released. */
  transact<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactOptions): Promise<T>;
  /** Pool use, for metrics. */
  stats(): { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

export interface PgDbOptions {
  connectionString: string;
  /** A schema to put first on the search_path (tests give each file its own). */
  schema?: string;
  max?: number;
  /**
   * How long a statement may take before the vault gives up on it. Short when serving, so that a database that
   * accepts connections but answers nothing turns into 503s within about a second and a half; the maintenance
   * commands, whose pages take longer, set more.
   */
  queryTimeoutMs?: number;
  logger?: Logger;
}

// SQLSTATE classes 08 (connection exception), 57P0x (shutdown, cannot connect now), 57014 (statement timeout)
// and 53 (insufficient resources).
const UNAVAILABLE_SQLSTATE = /^(08|57P0|57014|53)/;

/** A driver error becomes StorageUnavailableError unless Postgres itself answered with a SQLSTATE of its own. */
export function classifyDriverError(error: unknown): unknown {
  if (error instanceof StorageUnavailableError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const sqlstate = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  if (sqlstate && !UNAVAILABLE_SQLSTATE.test(sqlstate)) return error;
  return new StorageUnavailableError(typeof code === 'string' ? code : undefined);
}

/**
 * After the database stopped answering (a statement or a connection attempt ran into its timeout), every query
 * fails at once for a short while instead of each waiting out its own timeout: queued behind the one that hung, a
 * request would wait twice as long. A database that answers, even with an error, or a connection that drops, does
 * not trip it. Then queries go through again, so recovery needs no restart.
 */
function createBreaker(openMs: number, hangMs: number) {
  let openUntil = 0;
  return {
    check(): void {
      if (Date.now() < openUntil) throw new StorageUnavailableError('breaker_open');
    },
    failed(error: unknown, startedAt: number): void {
      if (error instanceof StorageUnavailableError && Date.now() - startedAt >= hangMs) openUntil = Date.now() + openMs;
    },
  };
}

/** Waits for every promise to settle, then throws the first failure: nothing is left running unobserved. */
export const settleAll = async (promises: Array<Promise<unknown>>): Promise<void> => {
  const results = await Promise.allSettled(promises);
  const failure = results.find((result) => result.status === 'rejected');
  if (failure) throw (failure as PromiseRejectedResult).reason;
};

const HOT_PLANS = `SELECT set_config('plan_cache_mode',
  CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN 'force_custom_plan' ELSE 'force_generic_plan' END, false)`;

export function createPgDb(options: PgDbOptions): Db {
  const queryTimeout = options.queryTimeoutMs ?? 1_500;
  const connectTimeout = 1_000;
  const breaker = createBreaker(1_000, 0.9 * Math.min(connectTimeout, queryTimeout));
  const createPool = (settings: string[], onConnect?: (client: pg.PoolClient) => Promise<unknown>) => {
    const created = new pg.Pool({
      connectionString: options.connectionString,
      max: options.max ?? 20,
      // Waiting for a connection, new or from a full pool, fails within a second rather than holding the request.
      connectionTimeoutMillis: connectTimeout,
      idleTimeoutMillis: 30_000,
      // The server gives up on a statement a little before the client gives up on the server.
      statement_timeout: Math.max(100, queryTimeout - 250),
      query_timeout: queryTimeout,
      idle_in_transaction_session_timeout: 10_000,
      application_name: 'phonevault',
      // A transaction sends its statements without waiting for the one before (db.transact, src/store/audit-log.ts).
      pipeline: true,
      ...(settings.length > 0 ? { options: settings.join(' ') } : {}),
      // Awaited before the connection is handed out; a failure fails that connection's checkout.
      ...(onConnect ? { onConnect } : {}),
    } as pg.PoolConfig);
    // An idle connection that drops must not crash the process; the next query reconnects.
    created.on('error', (error) => options.logger?.warn({ err: safeErrorFields(error) }, 'idle database connection lost'));
    return created;
  };
  const schema = options.schema ? [`-c search_path=${options.schema}`] : [];
  const pool = createPool(schema);
  // The hot paths run on connections of their own: their prepared statements are written to need no per-call
  // planning (their reads probe by key whatever the estimates), and left to choose, Postgres re-planned them on
  // every call. Citus cannot plan them generically (their CTEs), so on a coordinator each call is planned.
  let hotPool: pg.Pool | null = null;
  const hot = () => (hotPool ??= createPool(schema, (client) => client.query(HOT_PLANS)));
  const pools = () => (hotPool ? [pool, hotPool] : [pool]);

  async function guarded<T>(run: () => Promise<T>): Promise<T> {
    breaker.check();
    const startedAt = Date.now();
    try {
      return await run();
    } catch (error) {
      const classified = classifyDriverError(error);
      breaker.failed(classified, startedAt);
      throw classified;
    }
  }

  const send = <R>(client: pg.PoolClient, text: string, values?: unknown[], queryOptions?: QueryOptions) =>
    guarded(async () => {
      const result = queryOptions?.prepare ? await client.query({ name: queryOptions.prepare, text, values: values ?? [] }) : await client.query(text, values);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    });

  return {
    query: (text, values, queryOptions) =>
      guarded(async () => {
        const runner = queryOptions?.prepare ? hot() : pool;
        const result = queryOptions?.prepare ? await runner.query({ name: queryOptions.prepare, text, values: values ?? [] }) : await runner.query(text, values);
        return { rows: result.rows as never[], rowCount: result.rowCount ?? 0 };
      }),

    async transact(fn, transactOptions) {
      const client = await guarded(() => (transactOptions?.hot ? hot() : pool).connect());
      let destroy = false;
      // A socket that dies mid-transaction fails every query in flight and is then reported here: unheard, the
      // event would end the process. The connection is not reused.
      const broken = () => {
        destroy = true;
      };
      client.on('error', broken);
      try {
        const deferred: Array<Promise<unknown>> = [];
        const begun = send(client, 'BEGIN');
        const tx: Transaction = {
          query: (text, values, queryOptions) => send(client, text, values, queryOptions),
          beforeCommit(text, values, queryOptions) {
            const sent = send(client, text, values, queryOptions);
            sent.catch(() => undefined);
            deferred.push(sent);
            return sent;
          },
        };
        const result = fn(tx);
        await settleAll([begun, result]);
        // A COMMIT after a failed statement only rolls back; the statement's own error is what is thrown.
        await settleAll([...deferred, send(client, 'COMMIT')]);
        return await result;
      } catch (error) {
        const rolledBack = await client.query('ROLLBACK').then(
          () => true,
          () => false,
        );
        // A connection that timed out, dropped, or could not even roll back is destroyed, never reused.
        destroy ||= !rolledBack || error instanceof StorageUnavailableError;
        throw error;
      } finally {
        client.removeListener('error', broken);
        client.release(destroy || undefined);
      }
    },

    stats: () =>
      pools().reduce((sum, each) => ({ total: sum.total + each.totalCount, idle: sum.idle + each.idleCount, waiting: sum.waiting + each.waitingCount }), {
        total: 0,
        idle: 0,
        waiting: 0,
      }),
    close: async () => {
      await Promise.all(pools().map((each) => each.end()));
    },
  };
}
