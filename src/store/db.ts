import pg from 'pg';
import type { Logger } from 'pino';

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/** The one surface the repositories use, so that another Postgres (an embedded one) can stand in for pg. */
export interface QueryOptions {
  /**
   * Prepares the statement once per connection under this name and then only binds and executes it: no
   * parse and no planning on every call, for the hot paths' fixed statements.
   */
  prepare?: string;
}

export interface Queryable {
  query<R = Record<string, unknown>>(text: string, values?: unknown[], options?: QueryOptions): Promise<QueryResult<R>>;
}

export interface Db extends Queryable {
  /** Runs fn in one transaction: commit on success, rollback on any error, the connection always released. */
  transact<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Pool use, for readiness and metrics. */
  stats(): { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

export interface PgDbOptions {
  connectionString: string;
  /** A schema to put first on the search_path (tests give each file its own). */
  schema?: string;
  max?: number;
  statementTimeoutMs?: number;
  logger?: Logger;
}

/**
 * The database could not be reached or dropped the connection: the request was not wrong, the storage is away.
 * The store classifies its own failures, so that no caller has to read a driver's message text.
 */
export class StorageUnavailableError extends Error {
  readonly code: string | undefined;

  constructor(code: string | undefined) {
    super('storage unavailable');
    this.name = 'StorageUnavailableError';
    this.code = code;
  }
}

// SQLSTATE classes 08 (connection exception), 57P0x (shutdown, cannot connect now) and 53 (insufficient resources).
const UNAVAILABLE_SQLSTATE = /^(08|57P0|53)/;

/** A driver error becomes StorageUnavailableError unless Postgres itself answered with a SQLSTATE of its own. */
export function classifyDriverError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  const sqlstate = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  if (sqlstate && !UNAVAILABLE_SQLSTATE.test(sqlstate)) return error;
  return new StorageUnavailableError(typeof code === 'string' ? code : undefined);
}

/** Only the SQLSTATE and class of a driver error: its message and detail can echo stored values. */
export function safeErrorFields(error: unknown): { type: string; code?: string } {
  const { name, code } = (error ?? {}) as { name?: unknown; code?: unknown };
  return { type: typeof name === 'string' ? name : 'Error', ...(typeof code === 'string' ? { code } : {}) };
}

export function createPgDb(options: PgDbOptions): Db {
  const statementTimeout = options.statementTimeoutMs ?? 5_000;
  const createPool = (settings: string[]) => {
    const created = new pg.Pool({
      connectionString: options.connectionString,
      max: options.max ?? 20,
      // A database that does not answer fails requests (503) within about a second rather than holding them.
      connectionTimeoutMillis: 1_000,
      idleTimeoutMillis: 30_000,
      statement_timeout: statementTimeout,
      query_timeout: statementTimeout + 1_000,
      idle_in_transaction_session_timeout: 10_000,
      application_name: 'phonevault',
      ...(settings.length > 0 ? { options: settings.join(' ') } : {}),
    });
    // An idle connection that drops must not crash the process; the next query reconnects.
    created.on('error', (error) => options.logger?.warn({ err: safeErrorFields(error) }, 'idle database connection lost'));
    return created;
  };
  const schema = options.schema ? [`-c search_path=${options.schema}`] : [];
  const pool = createPool(schema);
  // The hot paths' prepared statements run on connections of their own that always use the generic plan: they are
  // written to need no per-call planning (their reads probe by key whatever the estimates), and left to choose,
  // Postgres kept re-planning the audited read on every call — Postgres CPU per audited read ~47 µs, against ~27
  // with the generic plan (24-read flushes, in-process). Every other query keeps the default choice.
  let preparedPool: pg.Pool | null = null;
  const prepared = () => (preparedPool ??= createPool([...schema, '-c plan_cache_mode=force_generic_plan']));
  const pools = () => (preparedPool ? [pool, preparedPool] : [pool]);

  const query = async <R>(runner: pg.Pool | pg.PoolClient, text: string, values?: unknown[], options?: QueryOptions) => {
    try {
      const result = options?.prepare ? await runner.query({ name: options.prepare, text, values: values ?? [] }) : await runner.query(text, values);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      throw classifyDriverError(error);
    }
  };

  return {
    query: (text, values, options) => query(options?.prepare ? prepared() : pool, text, values, options),
    async transact(fn) {
      const client = await pool.connect().catch((error: unknown) => {
        throw classifyDriverError(error);
      });
      try {
        await client.query('BEGIN');
        const result = await fn({ query: (text, values, options) => query(client, text, values, options) });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
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
