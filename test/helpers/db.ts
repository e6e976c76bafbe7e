import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { createPgDb, type Db } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';

export interface TestDb {
  db: Db;
  url: string;
  schema: string;
  /** Drops the schema and closes the pool. */
  drop(): Promise<void>;
}

/** A migrated schema of its own, so that test files run in parallel without seeing each other's rows. */
export async function createTestDb(options: { max?: number } = {}): Promise<TestDb> {
  const url = inject('databaseUrl');
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const admin = createPgDb({ connectionString: url, max: 1 });
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.close();
  const db = createPgDb({ connectionString: url, schema, max: options.max ?? 10 });
  await migrate(db);
  return {
    db,
    url,
    schema,
    async drop() {
      await db.query(`DROP SCHEMA ${schema} CASCADE`);
      await db.close();
    },
  };
}
