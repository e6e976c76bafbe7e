import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { createPgDb } from '../../src/store/db.js';
import { createDatabase, dropDatabase } from './citus.js';
import { recordDatabase } from './log-sink.js';

// Creating and dropping databases on a loaded machine takes longer than the vault gives a request.
export const ADMIN_TIMEOUT_MS = 60_000;

/** A whole database of its own, for tests of commands that take a DATABASE_URL (its audit rows are leak-scanned when dropped). */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = inject('databaseUrl');
  const name = `pv_${randomBytes(6).toString('hex')}`;
  const admin = createPgDb({ connectionString: adminUrl, max: 1, queryTimeoutMs: ADMIN_TIMEOUT_MS });
  await createDatabase(admin, adminUrl, name);
  await admin.close();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const own = createPgDb({ connectionString: url.toString(), max: 1, queryTimeoutMs: ADMIN_TIMEOUT_MS });
      await recordDatabase(own);
      await own.close();
      const db = createPgDb({ connectionString: adminUrl, max: 1, queryTimeoutMs: ADMIN_TIMEOUT_MS });
      await dropDatabase(db, name);
      await db.close();
    },
  };
}
