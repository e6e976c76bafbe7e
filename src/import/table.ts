import pg from 'pg';
import { TOKEN_PATTERN, type TokenFormat } from '../crypto/tokens.js';
import type { Db } from '../store/db.js';
import { ImportRefused, type ImportSource, type RowTokens } from './run.js';

/**
 * A Postgres table in, read in primary-key order a batch at a time; each row's token written into `tokenColumn`
 * of the same row, or over the number itself with `replace`. A row is written only where it is not yet
 * (`tokenColumn IS NULL`, or a value that is not a token yet), so writing a committed batch again after an
 * interruption touches no row twice.
 */

export interface TablePosition {
  /** The last key done, as text; null before the first. */
  after: string | null;
  done: number;
}

export interface TablePending {
  keys: string[];
  tokens: string[];
}

export interface TableOptions {
  table: string;
  column: string;
  key: string;
  tokenColumn: string | null;
  replace: boolean;
  format: TokenFormat;
}

const TEXT_TYPES = /^(text|character varying(\(\d+\))?|character(\(\d+\))?|citext)$/;
// `tok_` and 22 characters; `+28` and 13 digits.
const TOKEN_LENGTH = 26;
const PHONE_TOKEN_LENGTH = 16;

export async function tableSource(db: Db, options: TableOptions): Promise<ImportSource<TablePosition, TablePending>> {
  const ident = pg.escapeIdentifier;
  // Named with its schema, so that no table of the same name earlier on the search_path can stand in for it.
  const { rows: found } = await db
    .query<{ name: string | null }>('SELECT format(\'%I.%I\', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)', [options.table])
    .catch(() => ({ rows: [] as Array<{ name: string | null }> }));
  const table = found[0]?.name;
  if (!table) throw new ImportRefused('--table: no such table in the source database');
  const { rows: columns } = await db.query<{ name: string; type: string; length: number | null; notNull: boolean; unique: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND a.atttypmod > 4 THEN a.atttypmod - 4 END AS length,
       a.attnotnull AS "notNull",
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
               AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) AS unique
     FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
    [table],
  );
  const column = (name: string, flag: string) => {
    const match = columns.find((c) => c.name === name);
    if (!match) throw new ImportRefused(`${flag}: the table has no such column`);
    return match;
  };
  const key = column(options.key, '--key');
  column(options.column, '--column');
  if (options.key === options.column) throw new ImportRefused('--key cannot be the column holding the numbers: keys are kept in the checkpoint');
  // Rows are read after the last key done and written by key: a key two rows share, or none, would skip rows or
  // give one row's token to another.
  if (!key.notNull || !key.unique) throw new ImportRefused('--key: must be the primary key, or a NOT NULL column with a unique index of its own');
  const target = options.replace ? column(options.column, '--column') : column(options.tokenColumn!, '--token-column');
  if (!TEXT_TYPES.test(target.type)) throw new ImportRefused(`${options.replace ? '--column' : '--token-column'}: a token is text; the column is ${target.type}`);
  const needed = options.format === 'phone' ? PHONE_TOKEN_LENGTH : TOKEN_LENGTH;
  if (target.length !== null && target.length < needed) {
    throw new ImportRefused(`${options.replace ? '--column' : '--token-column'}: holds ${target.length} characters; ${options.format === 'phone' ? 'a phone-shaped token is 16' : 'an opaque token is 26 (--format phone makes 16)'}`);
  }
  // Only the key's own type compares with its index: the keys travel as text and are cast back to it.
  const keyType = key.type;
  const k = ident(options.key);
  const v = ident(options.column);
  const t = ident(target.name);
  // A row is to do if its target is not yet written: NULL, or (replacing) a value that is not a token yet.
  const tokenPattern = pg.escapeLiteral(TOKEN_PATTERN.source);
  const todo = (alias: string) => (options.replace ? `(${alias}.${t} IS NOT NULL AND ${alias}.${t}::text !~ ${tokenPattern})` : `${alias}.${t} IS NULL`);
  const select = (after: boolean) =>
    `SELECT s.${k}::text AS k, s.${v}::text AS v FROM ${table} AS s WHERE ${todo('s')}${after ? ` AND s.${k} > $2::${keyType}` : ''} ORDER BY s.${k} LIMIT $1`;
  const update = (checked: boolean) => `UPDATE ${table} AS t SET ${t} = u.token FROM unnest($1::text[], $2::text[]${checked ? ', $3::text[]' : ''}) AS u(k, token${checked ? ', v' : ''})
    WHERE t.${k} = u.k::${keyType} AND ${todo('t')}${checked ? ` AND t.${v}::text IS NOT DISTINCT FROM u.v` : ''}`;
  let total: number | null = null;

  // A row whose number changed since it was read (the application kept writing) keeps its new number untouched:
  // the token is of the old one. Writing a stopped run's last batch again has no values to compare (the checkpoint
  // never holds numbers), so there only the target's state decides.
  const writeTokens = async (pending: TablePending, values?: string[]) => {
    if (pending.keys.length === 0) return;
    await db.query(update(values !== undefined), values ? [pending.keys, pending.tokens, values] : [pending.keys, pending.tokens]);
  };

  return {
    resumable: true,

    async recover(pending) {
      await writeTokens(pending);
    },

    async *batches(from, size) {
      const resumed = from?.after != null;
      const { rows: counted } = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${table} AS s WHERE ${todo('s')}${resumed ? ` AND s.${k} > $1::${keyType}` : ''}`,
        resumed ? [from!.after] : [],
      );
      total = Number(counted[0]!.n) + (from?.done ?? 0);
      let after = from?.after ?? null;
      let done = from?.done ?? 0;
      for (;;) {
        const { rows } = await db.query<{ k: string; v: string | null }>(select(after !== null), after !== null ? [size, after] : [size]);
        if (rows.length === 0) return;
        const start = { after, done };
        after = rows.at(-1)!.k;
        done += rows.length;
        yield {
          rows: rows.map((row) => ({ ref: `key ${row.k}`, value: row.v === null || row.v.trim() === '' ? null : row.v })),
          keys: rows.map((row) => row.k),
          start,
          end: { after, done },
        };
      }
    },

    stage(batch, tokens: RowTokens) {
      const keys = (batch as unknown as { keys: string[] }).keys;
      const pending: TablePending = { keys: [], tokens: [] };
      const values: string[] = [];
      for (const [i, token] of tokens.entries()) {
        if (token !== null) {
          pending.keys.push(keys[i]!);
          pending.tokens.push(token);
          values.push(batch.rows[i]!.value as string);
        }
      }
      return { end: batch.end, pending, output: { pending, values } };
    },

    advance() {},

    async write(output) {
      const { pending, values } = output as { pending: TablePending; values: string[] };
      await writeTokens(pending, values);
    },

    progress(position) {
      return total === null ? null : { done: position?.done ?? 0, total };
    },

    async close() {},
  };
}
