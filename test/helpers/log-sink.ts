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

/** The file of every phone-shaped token the run stored, checked against libphonenumber at its end. */
export const phoneTokensFile = (logFile: string) => `${logFile}.phone-tokens`;

/**
 * Every audit row a database holds, into the same file, so that the leak scan covers the trail as well; and every
 * phone-shaped token it holds, which the teardown runs through libphonenumber (test/helpers/global-setup.ts).
 */
export async function recordDatabase(db: Queryable): Promise<void> {
  await recordAuditRows(db);
  const tokens = await db.query<{ token: string }>("SELECT convert_from(token_id, 'UTF8') AS token FROM tokens WHERE phone_shaped").catch(() => ({ rows: [] }));
  if (tokens.rows.length > 0) appendFileSync(phoneTokensFile(inject('logFile')), tokens.rows.map((row) => `${row.token}\n`).join(''));
}

/** Every audit row a database holds, into the same file, so that the leak scan covers the trail as well. */
export async function recordAuditRows(db: Queryable): Promise<void> {
  const rows = await db.query('SELECT tenant_id, client, action, items, outcome, request_id, purpose FROM audit_events').catch(() => ({ rows: [] }));
  for (const row of rows.rows) recordLogLine(JSON.stringify({ auditRow: row }));
}
