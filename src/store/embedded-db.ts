import { settleAll, type Db, type QueryResult, type Queryable } from './db.js';

interface PgliteResult {
  rows: Record<string, unknown>[];
  affectedRows?: number;
  command?: string;
}
interface PgliteLike {
  query(text: string, values?: unknown[]): Promise<PgliteResult>;
  exec(text: string): Promise<PgliteResult[]>;
  transaction<T>(fn: (tx: { query: PgliteLike['query']; exec: PgliteLike['exec'] }) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

// pg hands out Buffers for bytea; PGlite plain Uint8Arrays. The repositories expect Buffers.
function normalize<R>(result: PgliteResult): QueryResult<R> {
  for (const row of result.rows) {
    for (const [key, value] of Object.entries(row)) {
      if (value instanceof Uint8Array && !Buffer.isBuffer(value)) row[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    }
  }
  return { rows: result.rows as R[], rowCount: result.command === 'SELECT' ? result.rows.length : (result.affectedRows ?? 0) };
}

function queryable(runner: Pick<PgliteLike, 'query' | 'exec'>): Queryable {
  return {
    async query<R>(text: string, values?: unknown[]) {
      // Without parameters, a migration file holds several statements: exec runs them all.
      if (!values || values.length === 0) {
        const results = await runner.exec(text);
        return normalize<R>(results.at(-1) ?? { rows: [] });
      }
      return normalize<R>(await runner.query(text, values));
    },
  };
}

/**
 * Postgres compiled to WebAssembly, in-process, persisted under dataDir: the zero-set-up development store.
 * It runs one query at a time and a transaction holds it exclusively, so transactions must stay short.
 */
export async function createEmbeddedDb(dataDir: string): Promise<Db> {
  const { PGlite } = await import('@electric-sql/pglite');
  const pglite = (await PGlite.create(dataDir)) as unknown as PgliteLike;
  const direct = queryable(pglite);
  return {
    query: (text, values) => direct.query(text, values),
    transact: (fn) =>
      pglite.transaction(async (tx) => {
        const runner = queryable(tx);
        // One query at a time here: the statements meant to travel with the COMMIT simply run last.
        const deferred: Array<Promise<unknown>> = [];
        const result = await fn({
          query: runner.query,
          beforeCommit: (text, values, options) => {
            const sent = runner.query(text, values, options);
            sent.catch(() => undefined);
            deferred.push(sent);
            return sent;
          },
        });
        await settleAll(deferred);
        return result;
      }),
    stats: () => ({ total: 1, idle: 1, waiting: 0 }),
    close: () => pglite.close(),
  };
}
