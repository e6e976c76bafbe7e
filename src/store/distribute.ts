import type { Queryable, Transaction } from './db.js';

/**
 * Where each of the vault's tables lives on a distributed Postgres (Citus): every table of a tenant's data is
 * distributed by `tenant_id` and co-located with `tenant_keys`, so that a tenant's rows are all on one worker and
 * every statement of a request runs there. The small tables of no tenant, or read before a tenant is known (an API
 * key by its id), stay plain tables on the coordinator, which every instance connects to: as reference tables,
 * Citus would lock them on a worker for every INSERT … ON CONFLICT with a check that wants UPDATE, DELETE or
 * TRUNCATE on the table, privileges the serving role must not have. A table the migrations create must be named
 * here: the test of this list fails otherwise, and `distribute` refuses a table it does not know.
 */
export const PLACEMENT = {
  /** In this order: tenant_keys first, since data_keys references it and the others are co-located with it. */
  byTenant: ['tenant_keys', 'data_keys', 'tokens', 'audit_heads', 'audit_events', 'idempotency_keys', 'import_checkpoints'],
  coordinator: ['schema_migrations', 'master_key_checks', 'audit_keys', 'api_keys'],
} as const;

const COLOCATE_WITH = PLACEMENT.byTenant[0];

export class NotDistributable extends Error {
  override name = 'NotDistributable';
}

/** Whether the database has the Citus extension, i.e. can be distributed. */
export async function hasCitus(q: Queryable): Promise<boolean> {
  return (await q.query("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).rowCount === 1;
}

/** The tables Citus has taken over, with how: 'h' distributed (hash), 'n' reference or local. Empty without Citus. */
async function placed(q: Queryable): Promise<Map<string, string>> {
  if (!(await hasCitus(q))) return new Map();
  const result = await q.query<{ name: string; method: string }>(
    `SELECT c.relname AS name, p.partmethod AS method FROM pg_dist_partition p
     JOIN pg_class c ON c.oid = p.logicalrelid WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())`,
  );
  return new Map(result.rows.map((row) => [row.name, row.method]));
}

/** Whether the vault's tables are distributed: then a migration's new tables are placed as it applies them. */
export async function isDistributed(q: Queryable): Promise<boolean> {
  return (await placed(q)).get(COLOCATE_WITH) === 'h';
}

/**
 * Distributes every tenant table of the current schema not yet distributed, in one transaction: `tenant_keys`,
 * then the tables co-located with it. Idempotent. The audit table's triggers (append-only) are
 * created on its shards, which `citus.enable_unsafe_triggers` allows; they refuse what they refuse on one node.
 */
export async function placeTables(tx: Transaction): Promise<{ distributed: string[] }> {
  if (!(await hasCitus(tx))) throw new NotDistributable('this database has no citus extension: run `CREATE EXTENSION citus` on a Citus coordinator first');
  const tables = (
    await tx.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
  ).rows.map((row) => row.name);
  const known = new Set<string>([...PLACEMENT.byTenant, ...PLACEMENT.coordinator]);
  const unknown = tables.filter((name) => !known.has(name));
  if (unknown.length > 0) throw new NotDistributable(`tables the vault does not know how to place: ${unknown.join(', ')}`);
  if (!tables.includes(COLOCATE_WITH)) throw new NotDistributable('the database is not migrated: run `phonevault migrate` first');

  const already = await placed(tx);
  const misplaced = PLACEMENT.coordinator.filter((name) => already.has(name));
  if (misplaced.length > 0) throw new NotDistributable(`tables that belong on the coordinator alone are distributed: ${misplaced.join(', ')}; undistribute them first`);
  await tx.query('SET LOCAL citus.enable_unsafe_triggers = on');
  const done = { distributed: [] as string[] };
  for (const name of PLACEMENT.byTenant) {
    if (!tables.includes(name) || already.get(name) === 'h') continue;
    if (already.has(name)) throw new NotDistributable(`${name} is placed another way than by tenant_id: undistribute it first`);
    await tx.query(
      name === COLOCATE_WITH ? "SELECT create_distributed_table($1::regclass, 'tenant_id')" : "SELECT create_distributed_table($1::regclass, 'tenant_id', colocate_with => $2)",
      name === COLOCATE_WITH ? [name] : [name, COLOCATE_WITH],
    );
    done.distributed.push(name);
  }
  return done;
}
