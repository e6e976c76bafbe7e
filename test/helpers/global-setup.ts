import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { createPgDb } from '../../src/store/db.js';
import { VAULT_ROLE } from './roles.js';
import { findLeaks } from './numbers.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    logFile: string;
  }
}

/**
 * The login role the tests run the vault as, a member of the group role migrations grant to (roles belong to the
 * whole server, so they are made here once, not per schema).
 */
async function createVaultRole(url: string): Promise<void> {
  const db = createPgDb({ connectionString: url, max: 1 });
  try {
    await db.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'phonevault_app') THEN CREATE ROLE phonevault_app NOLOGIN; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${VAULT_ROLE}') THEN CREATE ROLE ${VAULT_ROLE} LOGIN; END IF;
    END $$`);
    await db.query(`GRANT phonevault_app TO ${VAULT_ROLE}`);
  } finally {
    await db.close();
  }
}

/**
 * The test database: TEST_DATABASE_URL when set (CI, and machines that run Postgres locally), else a Postgres
 * container through testcontainers (a contributor with Docker needs nothing else).
 * The log file: every line every test app logged, and every audit row a test database held when it was dropped;
 * scanned for leaks once the whole run is over.
 */
export default async function setup(project: TestProject) {
  const logDir = mkdtempSync(join(tmpdir(), 'phonevault-test-logs-'));
  const logFile = join(logDir, 'all.log');
  writeFileSync(logFile, '');
  project.provide('logFile', logFile);

  let stopContainer = async () => {};
  const fromEnv = process.env.TEST_DATABASE_URL;
  let databaseUrl = fromEnv;
  if (!databaseUrl) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:17-alpine').start();
    databaseUrl = container.getConnectionUri();
    stopContainer = async () => void (await container.stop());
  }
  project.provide('databaseUrl', databaseUrl);
  await createVaultRole(databaseUrl);

  return async () => {
    await stopContainer();
    const text = readFileSync(logFile, 'utf8');
    const lines = text.split('\n').filter(Boolean).length;
    const leaks = findLeaks(text);
    rmSync(logDir, { recursive: true, force: true });
    if (leaks.length > 0) {
      // A teardown error alone does not fail a vitest run: set the exit code as well.
      process.exitCode = 1;
      console.error(`leak scan FAILED: the test run's logs contain ${leaks.join(', ')}`);
      return;
    }
    console.log(`leak scan: ${lines} log lines, no phone number and no JWT`);
  };
}
