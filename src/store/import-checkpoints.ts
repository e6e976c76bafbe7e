import type { Queryable } from './db.js';

/** Rows read, tokenized, refused (with a code) and skipped (no value), over the whole run. */
export interface ImportCounts {
  read: number;
  tokenized: number;
  invalid: number;
  skipped: number;
}

export interface ImportCheckpoint<P, B> {
  /** Where the next batch starts. */
  position: P;
  /** The last committed batch, whose output may not be written yet. */
  pending: B | null;
  counts: ImportCounts;
  done: boolean;
}

/** An import run's checkpoint, one row per tenant and run (src/vault/import.ts). */
export const importCheckpoints = {
  async load<P, B>(q: Queryable, tenant: string, runId: Buffer): Promise<ImportCheckpoint<P, B> | null> {
    const { rows } = await q.query<{ position: P; pending: B | null; counts: ImportCounts; done: boolean }>(
      'SELECT position, pending, counts, done FROM import_checkpoints WHERE tenant_id = $1 AND run_id = $2',
      [tenant, runId],
    );
    return rows[0] ?? null;
  },

  async save<P, B>(q: Queryable, tenant: string, runId: Buffer, checkpoint: ImportCheckpoint<P, B>): Promise<void> {
    await q.query(
      `INSERT INTO import_checkpoints (tenant_id, run_id, position, pending, counts, done) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (tenant_id, run_id) DO UPDATE SET position = $3, pending = $4, counts = $5, done = $6, updated_at = now()`,
      [tenant, runId, JSON.stringify(checkpoint.position), checkpoint.pending === null ? null : JSON.stringify(checkpoint.pending), JSON.stringify(checkpoint.counts), checkpoint.done],
    );
  },

  async remove(q: Queryable, tenant: string, runId: Buffer): Promise<void> {
    await q.query('DELETE FROM import_checkpoints WHERE tenant_id = $1 AND run_id = $2', [tenant, runId]);
  },
};
