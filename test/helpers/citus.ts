import { createPgDb, type Db } from '../../src/store/db.js';
import { placeTables } from '../../src/store/distribute.js';

/**
 * The suite on a distributed database (issue 21): TEST_DATABASE_URL names a database on a Citus coordinator with
 * its workers registered, and TEST_CITUS_WORKERS lists those workers (host:port,…). Every schema a test migrates is
 * then distributed as `phonevault distribute` would, and every database a test makes is made a Citus one on the
 * coordinator and each worker. Unset (CI), nothing here runs.
 */
export const CITUS_WORKERS = (process.env.TEST_CITUS_WORKERS ?? '').split(',').filter(Boolean);
export const DISTRIBUTED = CITUS_WORKERS.length > 0;

const TIMEOUT_MS = 120_000;

/** Distributes a migrated schema, through the owner's connection. */
export async function distributeSchema(owner: Db): Promise<void> {
  if (DISTRIBUTED) await owner.transact((tx) => placeTables(tx));
}

async function onEach(urls: string[], sql: string[]): Promise<void> {
  for (const url of urls) {
    const db = createPgDb({ connectionString: url, max: 1, queryTimeoutMs: TIMEOUT_MS });
    try {
      for (const statement of sql) await db.query(statement);
    } finally {
      await db.close();
    }
  }
}

const urlOf = (base: string, host: string | null, name: string) => {
  const url = new URL(base);
  if (host) url.host = host;
  url.pathname = `/${name}`;
  return url.toString();
};

/** Creates database `name` through `admin`: on a coordinator, on every worker too, with Citus and its nodes. */
export async function createDatabase(admin: Db, adminUrl: string, name: string): Promise<void> {
  if (!DISTRIBUTED) {
    await admin.query(`CREATE DATABASE ${name}`);
    return;
  }
  // One connection (max 1): the setting holds for the CREATE, which cannot run in a transaction block.
  await admin.query('SET citus.enable_create_database_propagation = on');
  await admin.query(`CREATE DATABASE ${name}`);
  await onEach(CITUS_WORKERS.map((worker) => urlOf(adminUrl, worker, name)), ['CREATE EXTENSION citus']);
  const coordinator = new URL(adminUrl);
  await onEach([urlOf(adminUrl, null, name)], [
    'CREATE EXTENSION citus',
    `SELECT citus_set_coordinator_host('${coordinator.hostname}', ${coordinator.port || 5432})`,
    ...CITUS_WORKERS.map((worker) => {
      const [host, port] = worker.split(':');
      return `SELECT citus_add_node('${host}', ${Number(port ?? 5432)})`;
    }),
  ]);
}

export async function dropDatabase(admin: Db, name: string): Promise<void> {
  if (!DISTRIBUTED) {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    return;
  }
  await admin.query('SET citus.enable_create_database_propagation = on');
  // The coordinator's backends just ended by FORCE may still hold their connections into a worker's copy for a
  // moment: that worker then refuses the drop (55006) once or twice.
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '55006' || attempt === 10) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
