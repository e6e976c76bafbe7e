import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { progressBar, withVault, type Io } from './cli-maintenance.js';
import type { TokenFormat } from './crypto/tokens.js';
import type { Env } from './config/index.js';
import { ConfigError, loadDatabaseUrl } from './config/index.js';
import { fileSource } from './import/files.js';
import pg from 'pg';
import { ImportRefused, importRunId, runImport, type ImportReport, type ImportSource } from './import/run.js';
import { tableSource } from './import/table.js';
import type { ImportCounts } from './store/import-checkpoints.js';
import { createPgDb } from './store/db.js';
import { cliCaller } from './vault/caller.js';
import { createOffload, type Offload } from './vault/offload.js';

export interface ImportCommandOptions {
  tenant: string;
  input?: string;
  output?: string;
  column?: string;
  field?: string;
  table?: string;
  key?: string;
  tokenColumn?: string;
  replace: boolean;
  sourceUrl?: string;
  country?: string;
  deterministic: boolean;
  format: TokenFormat;
  batchSize: number;
  restart: boolean;
}

/** The source, and what makes the run itself: its arguments, with the source database named by a hash. */
function describe(options: ImportCommandOptions): { kind: 'csv' | 'ndjson' | 'table'; identity: Record<string, unknown> } {
  const problems: string[] = [];
  if (options.table !== undefined) {
    if (!options.column) problems.push('--column: names the column of --table holding the numbers');
    if (!options.key) problems.push('--key: names the primary key of --table, the order it is read in');
    if (options.replace === (options.tokenColumn !== undefined)) problems.push('--token-column or --replace: exactly one says where the tokens go');
    if (options.input !== undefined || options.output !== undefined || options.field !== undefined) problems.push('--table: reads the table; --input, --output and --field are for files');
    if (problems.length > 0) throw new ConfigError(problems);
    return { kind: 'table', identity: { table: options.table, column: options.column, key: options.key, tokenColumn: options.tokenColumn ?? null, replace: options.replace, source: options.sourceUrl ? createHash('sha256').update(options.sourceUrl).digest('hex') : null } };
  }
  if ((options.column === undefined) === (options.field === undefined)) problems.push('--column (CSV) or --field (NDJSON): exactly one names where the numbers are');
  if (options.tokenColumn !== undefined || options.replace || options.key !== undefined || options.sourceUrl !== undefined) problems.push('--token-column, --replace, --key and --source-url are for --table');
  if (problems.length > 0) throw new ConfigError(problems);
  const path = (p: string | undefined) => (p === undefined || p === '-' ? '-' : resolve(p));
  return {
    kind: options.column !== undefined ? 'csv' : 'ndjson',
    identity: { input: path(options.input), output: path(options.output), name: options.column ?? options.field },
  };
}

/** A bar with rate and ETA on a terminal; a plain line every few seconds otherwise. */
function progressPrinter(tty: boolean, write: (text: string) => void) {
  const started = Date.now();
  let lastLine = started;
  let firstRead: number | null = null;
  return (counts: ImportCounts, progress: { done: number; total: number } | null) => {
    firstRead ??= counts.read;
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? (counts.read - firstRead) / seconds : 0;
    const share = progress && progress.total > 0 ? Math.min(1, progress.done / progress.total) : null;
    const eta = share !== null && share > 0 && rate > 0 ? ((seconds / share) * (1 - share)) | 0 : null;
    const rateText = `${Math.round(rate).toLocaleString('en-US')} rows/s`;
    const etaText = eta === null ? '' : `  ETA ${Math.floor(eta / 60)}:${String(eta % 60).padStart(2, '0')}`;
    if (tty) {
      const bar = share === null ? '' : `${progressBar(share)}  `;
      write(`\r${bar}${counts.read.toLocaleString('en-US')} rows  ${rateText}${etaText}   `);
    } else if (Date.now() - lastLine >= 2000) {
      lastLine = Date.now();
      write(`import: ${counts.read} rows read, ${counts.tokenized} tokenized, ${rateText}${share === null ? '' : `, ${(share * 100).toFixed(0)}%`}${etaText}\n`);
    }
  };
}

export async function importCommand(options: ImportCommandOptions, env: Env, { err }: Io): Promise<number> {
  const { kind, identity } = describe(options);
  const tty = Boolean(process.stderr.isTTY);
  let stopping = false;
  // SIGINT finishes the batch under way, then stops; the next run continues after it.
  const onSignal = () => {
    stopping = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let offload: Offload | null = null;
  try {
    offload = createOffload({ threads: Math.max(1, availableParallelism() - 1) });
  } catch {
    offload = null; // no built worker (a source checkout): parse and seal inline
  }
  const sourceDb = kind === 'table' ? createPgDb({ connectionString: options.sourceUrl ?? loadDatabaseUrl(env), max: 2, queryTimeoutMs: 120_000 }) : null;
  const importOptions = { tenant: options.tenant, country: options.country, deterministic: options.deterministic, format: options.format, batchSize: options.batchSize, identity: { kind, ...identity }, restart: options.restart };
  // One copy of a run at a time, for as long as it runs: a session lock on a connection of its own, taken before
  // anything is read or written (a second copy would write the same output and tokenize the same rows).
  const lock = new pg.Client({ connectionString: loadDatabaseUrl(env) });
  lock.on('error', () => {}); // a dropped lock connection surfaces as the run's own database errors
  let report: ImportReport;
  try {
    await lock.connect();
    const id = importRunId(importOptions);
    const { rows } = await lock.query<{ held: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS held', [id.readInt32BE(0), id.readInt32BE(4)]);
    if (!rows[0]?.held) throw new ImportRefused('another run of this import is under way: let it finish, or stop it first');
    report = await withVault(
      env,
      async (deps) => {
        const source: ImportSource<unknown, unknown> = (
          kind === 'table'
            ? await tableSource(sourceDb!, { table: options.table!, column: options.column!, key: options.key!, tokenColumn: options.tokenColumn ?? null, replace: options.replace, format: options.format })
            : await fileSource({
                kind,
                name: (options.column ?? options.field)!,
                input: options.input === undefined || options.input === '-' ? process.stdin : options.input,
                output: options.output === undefined || options.output === '-' ? process.stdout : options.output,
                // The tenant's fingerprint key (made now for a new tenant, as its first tokenize would).
                digestKey: (await deps.keyring.forWriting(options.tenant, 0)).fingerprintKey,
              })
        ) as ImportSource<unknown, unknown>;
        return runImport(
          deps,
          cliCaller(options.tenant),
          source,
          importOptions,
          {
            onRowError: (ref, code) => err(`${ref}: ${code}`),
            onProgress: progressPrinter(tty, (text) => process.stderr.write(text)),
            stopping: () => stopping,
          },
        );
      },
      undefined,
      offload ?? undefined,
    );
  } catch (error) {
    if (error instanceof ImportRefused) {
      err(`phonevault: import refused: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await offload?.close();
    await sourceDb?.close();
    await lock.end().catch(() => {});
  }
  if (tty) process.stderr.write('\n');
  const { counts } = report;
  const summary = `${counts.read} rows read, ${counts.tokenized} tokenized, ${counts.invalid} invalid, ${counts.skipped} skipped`;
  if (report.alreadyDone) err(`import: already complete: ${summary}`);
  else if (report.interrupted) err(`import: interrupted after ${summary}; run it again with the same arguments to continue`);
  else err(`import: done${report.resumed ? ' (resumed)' : ''}: ${summary}`);
  if (report.interrupted) return 130;
  return counts.invalid > 0 ? 1 : 0;
}
