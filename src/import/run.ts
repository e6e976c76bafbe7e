import { createHash } from 'node:crypto';
import type { TokenFormat } from '../crypto/tokens.js';
import { importCheckpoints, type ImportCheckpoint, type ImportCounts } from '../store/import-checkpoints.js';
import type { Queryable, Transaction } from '../store/db.js';
import type { Caller } from '../vault/caller.js';
import type { VaultDeps } from '../vault/deps.js';
import { prepareBatch, storeBatchWith, type BatchOutcome, type TokenizeOptions } from '../vault/tokenize.js';

/**
 * `phonevault import`: existing numbers tokenized in bulk through the batch endpoint's store path, in process.
 * Each batch's tokens, its one audit event and the run's checkpoint commit in one transaction; the batch's output
 * (a file's rows, a table's column) is written after, and the checkpoint keeps the batch's tokens until the next
 * batch commits. A run stopped anywhere therefore continues where it stopped: the last committed batch's output
 * is written again from its stored tokens (a file cut back to where that batch began, a table updated only
 * where it is not yet), so no row is written twice and no number gets a second token.
 */

/** One row of the input: where it is (for messages), and its value: a number, nothing, or why it is unusable. */
export interface ImportRow {
  ref: string;
  value: string | null | { invalid: string };
}

export interface ImportBatch<P> {
  rows: ImportRow[];
  /** Where the batch starts and where the next one starts. */
  start: P;
  end: P;
}

/** Per row of a batch: its token, or null (skipped or refused). */
export type RowTokens = Array<string | null>;

/** Where input comes from and output goes: a file or stream (src/import/files.ts), or a table (src/import/table.ts). */
export interface ImportSource<P, B> {
  /** The batches from a position (null: the start), in order. */
  batches(from: P | null, size: number): AsyncIterable<ImportBatch<P>>;
  /** What the batch's output will be, computed before its commit (and again if the commit is retried, so it changes nothing): where the next batch starts, and its pending record. */
  stage(batch: ImportBatch<P>, tokens: RowTokens): { end: P; pending: B; output: unknown };
  /** Told that a staged batch committed: the next one's output follows it. */
  advance(end: P): void;
  /** Writes a committed batch's staged output. */
  write(output: unknown): Promise<void>;
  /** Writes the output of the batch a stopped run committed last, from its pending record, unless it is there. */
  recover(pending: B, position: P): Promise<void>;
  /** How far along a position is, out of what total (for progress), when it can be told. */
  progress(position: P | null): { done: number; total: number } | null;
  /** Whether the output can be completed after an interruption (a stream already handed to a reader cannot). */
  resumable: boolean;
  close(): Promise<void>;
}

export interface ImportOptions {
  tenant: string;
  country?: string | undefined;
  deterministic: boolean;
  format: TokenFormat;
  batchSize: number;
  /** The run's identity: everything that defines its input and output, hashed (same arguments, same run). */
  identity: Record<string, unknown>;
  /** Forget an earlier run with these arguments, finished or interrupted, and start over. */
  restart: boolean;
}

export interface ImportReport {
  counts: ImportCounts;
  /** Already complete before this run started. */
  alreadyDone: boolean;
  resumed: boolean;
  interrupted: boolean;
}

export interface ImportHooks {
  /** A row refused: its place and code, never its value. */
  onRowError(ref: string, code: string): void;
  onProgress(counts: ImportCounts, progress: { done: number; total: number } | null): void;
  /** Polled between batches: stop once the current one is written. */
  stopping(): boolean;
}

export class ImportRefused extends Error {}

/** A run's id: its arguments hashed (the same command is the same run). */
export const importRunId = (options: ImportOptions) =>
  createHash('sha256')
    .update(JSON.stringify({ ...options.identity, tenant: options.tenant, country: options.country ?? null, deterministic: options.deterministic, format: options.format }))
    .digest();

interface Staged<P> {
  batch: ImportBatch<P>;
  inputs: Array<{ phone: string; country?: string | undefined }>;
  /** Per input, the row it came from. */
  rowOf: number[];
  prepared: Awaited<ReturnType<typeof prepareBatch>>;
}

export async function runImport<P, B>(deps: VaultDeps, caller: Caller, source: ImportSource<P, B>, options: ImportOptions, hooks: ImportHooks): Promise<ImportReport> {
  const runId = importRunId(options);
  let checkpoint = await importCheckpoints.load<P, B>(deps.db, options.tenant, runId);
  if (checkpoint && options.restart) {
    await importCheckpoints.remove(deps.db, options.tenant, runId);
    checkpoint = null;
  }
  if (checkpoint?.done) return { counts: checkpoint.counts, alreadyDone: true, resumed: false, interrupted: false };
  if (checkpoint && !source.resumable) {
    throw new ImportRefused('an interrupted run of this import wrote to standard output, which cannot be completed: write to a file (--output) to be able to resume, or pass --restart to start over (the interrupted run\'s tokens stay, unreferenced)');
  }
  const resumed = checkpoint !== null;
  // Each save moves the checkpoint from where this run left it, or fails: two copies of one run at once would
  // tokenize the same rows twice, so the second to commit stops (its batch rolled back).
  let savedPosition: string | null = checkpoint ? JSON.stringify(checkpoint.position) : null;
  const saveIf = async (q: Queryable, next: ImportCheckpoint<P, B>) => {
    if (!(await importCheckpoints.saveIf(q, options.tenant, runId, next, savedPosition))) {
      throw new ImportRefused('another run of this import is under way (its checkpoint moved): let it finish, or stop it first');
    }
  };
  if (checkpoint?.pending) await source.recover(checkpoint.pending, checkpoint.position);
  const counts: ImportCounts = checkpoint?.counts ?? { read: 0, tokenized: 0, invalid: 0, skipped: 0 };
  const tokenizeOptions: TokenizeOptions = { deterministic: options.deterministic, format: options.format };
  let position: P | null = checkpoint?.position ?? null;

  const iterator = source.batches(position, options.batchSize)[Symbol.asyncIterator]();
  // The next batch is read, parsed and sealed while the current one commits and is written.
  const readAhead = async (): Promise<Staged<P> | null> => {
    const next = await iterator.next();
    if (next.done) return null;
    const batch = next.value;
    const inputs: Staged<P>['inputs'] = [];
    const rowOf: number[] = [];
    for (const [i, row] of batch.rows.entries()) {
      if (typeof row.value === 'string') {
        inputs.push({ phone: row.value, country: options.country });
        rowOf.push(i);
      }
    }
    const prepared = inputs.length > 0 ? await prepareBatch(deps, caller, inputs, tokenizeOptions) : { slots: [], rows: [] };
    return { batch, inputs, rowOf, prepared };
  };
  let ahead = readAhead();
  // Observed at once: a failure surfaces when awaited below, never as an unhandled rejection meanwhile.
  ahead.catch(() => {});
  let interrupted = false;
  // The previous batch's output, written while the next batch is stored: it must be done before that batch
  // commits, whose checkpoint no longer holds the previous one's tokens.
  let writing: Promise<void> = Promise.resolve();
  try {
    for (;;) {
      const staged = await ahead;
      if (!staged) break;
      ahead = readAhead();
      ahead.catch(() => {});
      const { batch } = staged;
      const unusable: Array<[number, string]> = [];
      for (const [i, row] of batch.rows.entries()) if (row.value !== null && typeof row.value === 'object') unusable.push([i, 'invalid_row']);
      // Computed afresh by each attempt: the audit log runs a transaction's work again when the tenant's head
      // moved under it, so nothing here may count twice or move the output on.
      let committed: { errors: Array<[number, string]>; counts: ImportCounts; end: P; output: unknown } | null = null;
      const commitWith = async (tx: Transaction | null, outcomes: BatchOutcome[]) => {
        await writing;
        const tokens: RowTokens = batch.rows.map(() => null);
        const errors = [...unusable];
        for (const outcome of outcomes) {
          if ('error' in outcome) errors.push([staged.rowOf[outcome.index]!, outcome.error.code]);
          else tokens[staged.rowOf[outcome.index]!] = outcome.tokenized.token;
        }
        const next: ImportCounts = {
          read: counts.read + batch.rows.length,
          skipped: counts.skipped + batch.rows.filter((row) => row.value === null).length,
          invalid: counts.invalid + errors.length,
          tokenized: counts.tokenized + tokens.filter((token) => token !== null).length,
        };
        const stagedOutput = source.stage(batch, tokens);
        await saveIf(tx ?? deps.db, { position: stagedOutput.end, pending: stagedOutput.pending, counts: next, done: false });
        committed = { errors, counts: next, end: stagedOutput.end, output: stagedOutput.output };
      };
      if (staged.inputs.length > 0) await storeBatchWith(deps, caller, staged.prepared, tokenizeOptions, (tx, outcomes) => commitWith(tx, outcomes));
      else await commitWith(null, []);
      const { errors, counts: next, end, output } = committed!;
      savedPosition = JSON.stringify(end);
      position = end;
      source.advance(end);
      writing = source.write(output);
      writing.catch(() => {});
      Object.assign(counts, next);
      for (const [i, code] of errors.sort((a, b) => a[0] - b[0])) hooks.onRowError(batch.rows[i]!.ref, code);
      hooks.onProgress(counts, source.progress(position));
      if (hooks.stopping()) {
        interrupted = true;
        break;
      }
    }
    await writing;
    // A finished run is remembered, so that running it again does nothing; but a run to a stream has nothing to
    // protect once finished, and its next run is a new one (new input on standard input).
    if (!interrupted && source.resumable) await saveIf(deps.db, { position: position!, pending: null, counts, done: true });
    else if (!interrupted) await importCheckpoints.remove(deps.db, options.tenant, runId);
  } finally {
    await iterator.return?.();
    await source.close();
  }
  return { counts, alreadyDone: false, resumed, interrupted };
}
