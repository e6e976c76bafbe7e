import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { findLeaks } from './numbers.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    logFile: string;
  }
}

/**
 * The test database: TEST_DATABASE_URL when set (CI, and machines that run Postgres locally), else a Postgres
 * container through testcontainers (a contributor with Docker needs nothing else).
 * The log file: every line every test app logged; scanned for leaks once the whole run is over.
 */
export default async function setup(project: TestProject) {
  const logDir = mkdtempSync(join(tmpdir(), 'phonevault-test-logs-'));
  const logFile = join(logDir, 'all.log');
  writeFileSync(logFile, '');
  project.provide('logFile', logFile);

  let stopContainer = async () => {};
  const fromEnv = process.env.TEST_DATABASE_URL;
  if (fromEnv) {
    project.provide('databaseUrl', fromEnv);
  } else {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:17-alpine').start();
    project.provide('databaseUrl', container.getConnectionUri());
    stopContainer = async () => void (await container.stop());
  }

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
