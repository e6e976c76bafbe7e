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

  /**
   * Saves the checkpoint if it is still where this run last saw it (`expected`, the position as JSON; null: no
   * checkpoint yet). False when another run moved it or made it first.
   */
  async saveIf<P, B>(q: Queryable, tenant: string, runId: Buffer, checkpoint: ImportCheckpoint<P, B>, expected: string | null): Promise<boolean> {
    const values = [tenant, runId, JSON.stringify(checkpoint.position), checkpoint.pending === null ? null : JSON.stringify(checkpoint.pending), JSON.stringify(checkpoint.counts), checkpoint.done];
    const result =
      expected === null
        ? await q.query('INSERT INTO import_checkpoints (tenant_id, run_id, position, pending, counts, done) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, run_id) DO NOTHING', values)
        : await q.query(
            'UPDATE import_checkpoints SET position = $3, pending = $4, counts = $5, done = $6, updated_at = now() WHERE tenant_id = $1 AND run_id = $2 AND position = $7::jsonb',
            [...values, expected],
          );
    return result.rowCount === 1;
  },

  async removeTenant(q: Queryable, tenant: string): Promise<void> {
    await q.query('DELETE FROM import_checkpoints WHERE tenant_id = $1', [tenant]);
  },

  async remove(q: Queryable, tenant: string, runId: Buffer): Promise<void> {
    await q.query('DELETE FROM import_checkpoints WHERE tenant_id = $1 AND run_id = $2', [tenant, runId]);
  },
};
