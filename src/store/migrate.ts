import { readdir, readFile } from 'node:fs/promises';
import type { Db } from './db.js';
import { hasCitus, isDistributed, placeTables } from './distribute.js';

const MIGRATIONS_DIR = new URL('../../migrations/', import.meta.url);
const MIGRATION_FILE = /^(\d{3})_[a-z0-9_]+\.sql$/;

/**
 * Applies the numbered SQL files in migrations/ that have not run yet, all in one transaction under an
 * advisory lock so that instances starting together do not race. Returns the names it applied. A distributed
 * database's new tables are placed in the same transaction (src/store/distribute.ts).
 */
export async function migrate(db: Db): Promise<string[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((name) => MIGRATION_FILE.test(name)).sort();
  return db.transact(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('phonevault.migrate'))`);
    // On a Citus coordinator, a migration's triggers are created on the shards of the tables it alters.
    if (await hasCitus(tx)) await tx.query('SET LOCAL citus.enable_unsafe_triggers = on');
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    const applied: string[] = [];
    for (const name of files) {
      const version = Number(name.slice(0, 3));
      if (done.has(version)) continue;
      await tx.query(await readFile(new URL(name, MIGRATIONS_DIR), 'utf8'));
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [version, name]);
      applied.push(name);
    }
    // On a distributed database, the tables these migrations created are placed as `phonevault distribute` would.
    if (applied.length > 0 && (await isDistributed(tx))) await placeTables(tx);
    return applied;
  });
}
