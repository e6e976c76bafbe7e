import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { createPgDb, type Db } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';
import { distributeSchema } from './citus.js';
import { recordDatabase } from './log-sink.js';

import { asVaultRole } from './roles.js';

export { asVaultRole, VAULT_ROLE } from './roles.js';

export interface TestDb {
  /** The vault's connection: the serving role, which may not delete audit events nor change what it may not. */
  db: Db;
  /** The owner's connection (migrations, and tests that inspect or tamper as an operator could). */
  owner: Db;
  url: string;
  schema: string;
  /** Drops the schema and closes the pools. */
  drop(): Promise<void>;
}

/** A migrated schema of its own, so that test files run in parallel without seeing each other's rows. */
export async function createTestDb(options: { max?: number } = {}): Promise<TestDb> {
  const url = inject('databaseUrl');
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const owner = createPgDb({ connectionString: url, schema, max: 4, queryTimeoutMs: 30_000 });
  await owner.query(`CREATE SCHEMA ${schema}`);
  await migrate(owner);
  await distributeSchema(owner);
  const db = createPgDb({ connectionString: asVaultRole(url), schema, max: options.max ?? 10 });
  return {
    db,
    owner,
    url,
    schema,
    async drop() {
      await recordDatabase(owner);
      await db.close();
      await owner.query(`DROP SCHEMA ${schema} CASCADE`);
      await owner.close();
    },
  };
}
