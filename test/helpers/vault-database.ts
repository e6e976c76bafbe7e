import { parseMasterKeys } from '../../src/crypto/master-keys.js';
import { createPgDb } from '../../src/store/db.js';
import { build, type TestApp } from './build.js';
import { runCli } from './cli.js';
import { ADMIN_TIMEOUT_MS, createTestDatabase } from './database.js';
import { DISTRIBUTED } from './citus.js';
import { asVaultRole } from './roles.js';

/**
 * A whole database migrated by `phonevault migrate`, for tests that drive the command line and the HTTP app
 * against the same data; apps built on it are closed by drop().
 */
export async function createVaultDatabase(masterKey: string) {
  const database = await createTestDatabase();
  const migrated = await runCli(['migrate'], { DATABASE_URL: database.url, VAULT_MASTER_KEY: masterKey });
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.err}`);
  if (DISTRIBUTED) {
    const distributed = await runCli(['distribute'], { DATABASE_URL: database.url });
    if (distributed.code !== 0) throw new Error(`distribute failed: ${distributed.err}`);
  }
  // The owner's connection, for inspecting and tampering as an operator could; the apps run as the serving role.
  const db = createPgDb({ connectionString: database.url, max: 4, queryTimeoutMs: ADMIN_TIMEOUT_MS });
  const vaultDb = createPgDb({ connectionString: asVaultRole(database.url), max: 4 });
  const apps: TestApp[] = [];
  return {
    url: database.url,
    db,
    /** The HTTP app on this database, with these master keys (`VAULT_MASTER_KEY` syntax). */
    async app(masterKeys = masterKey): Promise<TestApp> {
      const app = await build({ masterKeys: parseMasterKeys(masterKeys) }, { db: vaultDb, owner: db, url: database.url, schema: 'public', drop: async () => {} });
      apps.push(app);
      return app;
    },
    /** The command line against this database. */
    run: (argv: string[], masterKeys = masterKey) => runCli(argv, { DATABASE_URL: database.url, VAULT_MASTER_KEY: masterKeys }),
    async drop(): Promise<void> {
      for (const app of apps) await app.app.close();
      await vaultDb.close();
      await db.close();
      await database.drop();
    },
  };
}
