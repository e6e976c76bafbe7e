import { appendFileSync } from 'node:fs';
import { inject } from 'vitest';
import type { Queryable } from '../../src/store/db.js';

/**
 * Every log line any test app writes is appended to one file for the whole run; the global teardown scans
 * it for phone numbers and JWTs and fails the run on any (test/helpers/global-setup.ts).
 */
export function recordLogLine(line: string): void {
  appendFileSync(inject('logFile'), `${line}\n`);
}

/** Every audit row a database holds, into the same file, so that the leak scan covers the trail as well. */
export async function recordAuditRows(db: Queryable): Promise<void> {
  const rows = await db.query('SELECT tenant_id, client, action, items, outcome, request_id, purpose FROM audit_events').catch(() => ({ rows: [] }));
  for (const row of rows.rows) recordLogLine(JSON.stringify({ auditRow: row }));
}
