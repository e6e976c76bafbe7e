import { appendFileSync } from 'node:fs';
import { inject } from 'vitest';

/**
 * Every log line any test app writes is appended to one file for the whole run; the global teardown scans
 * it for phone numbers and JWTs and fails the run on any (test/helpers/global-setup.ts).
 */
export function recordLogLine(line: string): void {
  appendFileSync(inject('logFile'), `${line}\n`);
}
