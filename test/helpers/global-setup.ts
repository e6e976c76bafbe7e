import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { createPgDb } from '../../src/store/db.js';
import { VAULT_ROLE } from './roles.js';
import { findLeaks } from './numbers.js';
import { phoneTokensFile } from './log-sink.js';
import { isValidPhoneNumber, parsePhoneNumberFromString } from 'libphonenumber-js/max';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    logFile: string;
  }
}

/** A Postgres answering on this machine's standard port or socket, as `postgres`, or null. */
async function localPostgres(): Promise<string | null> {
  for (const url of ['postgres://postgres@127.0.0.1:5432/postgres', 'postgres://postgres@localhost/postgres?host=/var/run/postgresql']) {
    const db = createPgDb({ connectionString: url, max: 1, queryTimeoutMs: 60_000 });
    try {
      await db.query('SELECT 1');
      return url;
    } catch {
      // not this one
    } finally {
      await db.close();
    }
  }
  return null;
}

/**
 * The login role the tests run the vault as, a member of the group role migrations grant to (roles belong to the
 * whole server, so they are made here once, not per schema).
 */
async function createVaultRole(url: string): Promise<void> {
  const db = createPgDb({ connectionString: url, max: 1, queryTimeoutMs: 60_000 });
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
 * The test database: TEST_DATABASE_URL when set (CI); else a database of the run's own on a Postgres answering
 * locally; else a Postgres container through testcontainers (a contributor with Docker needs nothing else); else
 * one line that names the three ways, and a failed run.
 * The log file: every line every test app logged, and every audit row a test database held when it was dropped;
 * scanned for leaks once the whole run is over.
 */
export default async function setup(project: TestProject) {
  const logDir = mkdtempSync(join(tmpdir(), 'phonevault-test-logs-'));
  const logFile = join(logDir, 'all.log');
  writeFileSync(logFile, '');
  project.provide('logFile', logFile);

  let stopDatabase = async () => {};
  let databaseUrl = process.env.TEST_DATABASE_URL;
  if (!databaseUrl) {
    const local = await localPostgres();
    if (local) {
      // A database of the run's own on the local server, dropped at the end.
      const name = `phonevault_test_${process.pid}`;
      const admin = createPgDb({ connectionString: local, max: 1, queryTimeoutMs: 60_000 });
      await admin.query(`DROP DATABASE IF EXISTS ${name}`);
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.close();
      const url = new URL(local);
      url.pathname = `/${name}`;
      databaseUrl = url.toString();
      stopDatabase = async () => {
        const db = createPgDb({ connectionString: local, max: 1, queryTimeoutMs: 60_000 });
        await db.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await db.close();
      };
    } else {
      try {
        const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
        const container = await new PostgreSqlContainer('postgres:17-alpine').start();
        databaseUrl = container.getConnectionUri();
        stopDatabase = async () => void (await container.stop());
      } catch {
        console.error('phonevault tests need a Postgres: set TEST_DATABASE_URL, run one locally (127.0.0.1:5432 or its socket, user postgres), or start Docker for a throwaway container');
        process.exit(1);
      }
    }
  }
  project.provide('databaseUrl', databaseUrl);
  await createVaultRole(databaseUrl);

  return async () => {
    await stopDatabase();
    const text = readFileSync(logFile, 'utf8');
    const lines = text.split('\n').filter(Boolean).length;
    const leaks = findLeaks(text);
    const phoneTokens = existsSync(phoneTokensFile(logFile)) ? readFileSync(phoneTokensFile(logFile), 'utf8').split('\n').filter(Boolean) : [];
    rmSync(logDir, { recursive: true, force: true });
    // No phone-shaped token the run stored is a valid number to libphonenumber, for its own region or any other.
    const dialable = phoneTokens.filter((token) => isValidPhoneNumber(token) || parsePhoneNumberFromString(token)?.country !== undefined);
    if (dialable.length > 0 || phoneTokens.some((token) => !/^\+28[0-9]{13}$/.test(token))) {
      process.exitCode = 1;
      console.error(`phone-shaped token scan FAILED: ${dialable.length} of ${phoneTokens.length} are valid numbers or malformed`);
      return;
    }
    console.log(`phone-shaped token scan: ${phoneTokens.length} tokens, none a valid number of any region`);
    if (leaks.length > 0) {
      // A teardown error alone does not fail a vitest run: set the exit code as well.
      process.exitCode = 1;
      console.error(`leak scan FAILED: the test run's logs contain ${leaks.join(', ')}`);
      return;
    }
    console.log(`leak scan: ${lines} log lines, no phone number, no JWT and no API key`);
  };
}
