import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.js';
import { bearer, type TestApp } from '../helpers/build.js';
import { findLeaks, NUMBERS } from '../helpers/numbers.js';
import { recordLogLine } from '../helpers/log-sink.js';
import { createVaultDatabase } from '../helpers/vault-database.js';

const masterKey = randomBytes(32).toString('base64');
let database: Awaited<ReturnType<typeof createVaultDatabase>>;
let db: Db;
let t: TestApp;
let dir: string;
const run = async (argv: string[]) => {
  const res = await database.run(argv);
  // What the command printed is scanned like every log line of the run.
  for (const line of res.err.split('\n')) recordLogLine(JSON.stringify({ cliStderr: line }));
  return res;
};
const file = (name: string) => join(dir, name);

beforeAll(async () => {
  database = await createVaultDatabase(masterKey);
  db = database.db;
  t = await database.app();
  dir = mkdtempSync(join(tmpdir(), 'phonevault-import-'));
});
afterAll(async () => {
  await database.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** The numbers the tokens stand for, in order (null where a token was not found). */
async function numbersOf(tokens: string[], tenant = 'acme'): Promise<Array<string | null>> {
  const out: Array<string | null> = [];
  for (let i = 0; i < tokens.length; i += 1000) {
    const res = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant, scope: 'detokenize' }), payload: { tokens: tokens.slice(i, i + 1000) } });
    out.push(...res.json().results.map((r: { phone?: string }) => r.phone ?? null));
  }
  return out;
}
const count = async (sql: string, values: unknown[] = []) => Number((await db.query<{ n: string }>(sql, values)).rows[0]!.n);
const tokenRows = (tenant: string) => count('SELECT count(*) AS n FROM tokens WHERE tenant_id = $1', [tenant]);
const numberOf = (i: number) => `+1201555${String(1000 + (i % 9000))}`;

describe('phonevault import, files', () => {
  it('replaces the CSV column with tokens and leaves every other byte as it was; refused rows are emptied, reported by row and code', async () => {
    const input = [
      '\ufeffid,phone,note\r\n',
      `1,${NUMBERS.us.e164},"quoted, with comma"\r\n`,
      `2,"${NUMBERS.us2.national}","multi\nline"\r\n`,
      '3,,nothing\r\n',
      `4,${NUMBERS.invalid.e164},"say ""hi"""\r\n`,
      `5,${NUMBERS.gb.e164}`,
    ].join('');
    writeFileSync(file('a.csv'), input);
    const res = await run(['import', '--tenant', 'acme', '--input', file('a.csv'), '--column', 'phone', '--country', 'US', '--output', file('a.out.csv')]);
    expect(res.code).toBe(1);
    expect(res.err).toContain('row 4: invalid_phone');
    expect(res.err).toContain('import: done: 5 rows read, 3 tokenized, 1 invalid, 1 skipped');
    expect(findLeaks(res.err)).toEqual([]);
    const output = readFileSync(file('a.out.csv'), 'utf8');
    const tokens = [...output.matchAll(/tok_[A-Za-z0-9_-]{22}/g)].map((m) => m[0]);
    expect(tokens).toHaveLength(3);
    expect(output).toBe(
      ['\ufeffid,phone,note\r\n', `1,${tokens[0]},"quoted, with comma"\r\n`, `2,${tokens[1]},"multi\nline"\r\n`, '3,,nothing\r\n', '4,,"say ""hi"""\r\n', `5,${tokens[2]}`].join(''),
    );
    expect(await numbersOf(tokens)).toEqual([NUMBERS.us.e164, NUMBERS.us2.e164, NUMBERS.gb.e164]);
    // Run again with the same arguments: it is complete, and nothing more is made.
    const before = await tokenRows('acme');
    const again = await run(['import', '--tenant', 'acme', '--input', file('a.csv'), '--column', 'phone', '--country', 'US', '--output', file('a.out.csv')]);
    expect(again.err).toContain('import: already complete: 5 rows read, 3 tokenized, 1 invalid, 1 skipped');
    expect(await tokenRows('acme')).toBe(before);
  });

  it('replaces the NDJSON field in place (large integers and spacing kept), phone-shaped and deterministic on request', async () => {
    const lines = [
      `{"id":1,"phone":"${NUMBERS.fr.e164}","big":12345678901234567890}`,
      `{ "id": 2 , "phone" : "${NUMBERS.fr.national}" , "x": {"phone": "inner"} }`,
      '{"id":3}',
      'not json',
      '{"id":5,"phone":33612345678}',
      `{"phone":"${NUMBERS.de.e164}","phone":"again"}`,
      '',
      `{"id":8,"phone":"${NUMBERS.de.e164}"}`,
    ];
    writeFileSync(file('b.ndjson'), `${lines.join('\n')}\n`);
    const res = await run(['import', '--tenant', 'acme', '--input', file('b.ndjson'), '--field', 'phone', '--country', 'FR', '--format', 'phone', '--deterministic', '--output', file('b.out.ndjson')]);
    expect(res.code).toBe(1);
    expect(res.err).toContain('row 4: invalid_row');
    expect(res.err).toContain('row 5: invalid_row');
    expect(res.err).toContain('row 6: invalid_row');
    expect(res.err).toContain('import: done: 8 rows read, 3 tokenized, 3 invalid, 2 skipped');
    const out = readFileSync(file('b.out.ndjson'), 'utf8').split('\n');
    const token = JSON.parse(out[0]!).phone as string;
    expect(token).toMatch(/^\+28[0-9]{13}$/);
    expect(out[0]).toBe(`{"id":1,"phone":"${token}","big":12345678901234567890}`);
    // The same number, deterministic: the same token.
    expect(out[1]).toBe(`{ "id": 2 , "phone" : "${token}" , "x": {"phone": "inner"} }`);
    expect(out.slice(2, 7)).toEqual(['{"id":3}', '', '', '', '']);
    expect(await numbersOf([token, JSON.parse(out[7]!).phone])).toEqual([NUMBERS.fr.e164, NUMBERS.de.e164]);
    // Nothing of a refused row reached the output (the phone-shaped tokens aside, which read as numbers to the scan).
    expect(findLeaks(readFileSync(file('b.out.ndjson'), 'utf8').replaceAll(/\+28[0-9]{13}/g, ''))).toEqual([]);
  });

  it('refuses what it cannot do right, and writes nothing', async () => {
    writeFileSync(file('c.csv'), `id,phone\n1,${NUMBERS.us.e164}\n`);
    const before = await tokenRows('acme');
    const cases: Array<[string[], RegExp]> = [
      [['--input', file('c.csv'), '--column', 'tel', '--output', file('c1.out')], /the CSV header has no column "tel"/],
      [['--input', file('a.csv'), '--column', 'phone', '--output', file('a.csv')], /the output file exists/],
      [['--input', file('c.csv'), '--column', 'phone', '--field', 'phone'], /exactly one names where the numbers are/],
      [['--input', file('c.csv'), '--column', 'phone', '--replace'], /are for --table/],
    ];
    for (const [args, message] of cases) {
      const res = await run(['import', '--tenant', 'acme', ...args]);
      expect(res.code).not.toBe(0);
      expect(res.err).toMatch(message);
    }
    writeFileSync(file('d.csv'), `id,phone\n1,"${NUMBERS.us.e164}\n2,x\n`);
    const malformed = await run(['import', '--tenant', 'acme', '--input', file('d.csv'), '--column', 'phone', '--output', file('d.out')]);
    expect(malformed.code).toBe(1);
    expect(malformed.err).toMatch(/the CSV is malformed at byte 9: a quoted field is not closed/);
    expect(findLeaks(malformed.err)).toEqual([]);
    expect(await tokenRows('acme')).toBe(before);
  });
});

describe('phonevault import, a table', () => {
  beforeAll(async () => {
    await db.query(`CREATE TABLE crm_contacts (id bigint PRIMARY KEY, phone varchar(32), phone_token text, short_token varchar(12))`);
    await db.query(
      `INSERT INTO crm_contacts (id, phone) SELECT g, CASE WHEN g % 50 = 0 THEN NULL WHEN g % 97 = 0 THEN '12345' ELSE '(201) 555-' || (1000 + g % 9000) END FROM generate_series(1, 2500) g`,
    );
  });

  it('writes each token into the token column of its row, the number untouched, one audit event per batch', async () => {
    const events = () => count("SELECT count(*) AS n FROM audit_events WHERE tenant_id = 'crm' AND action = 'tokenize'");
    const res = await run(['import', '--tenant', 'crm', '--source-url', database.url, '--table', 'crm_contacts', '--column', 'phone', '--key', 'id', '--token-column', 'phone_token', '--country', 'US', '--batch-size', '500']);
    expect(res.code).toBe(1);
    expect(res.err).toContain('key 97: invalid_phone');
    expect(res.err).toMatch(/import: done: 2500 rows read, 2425 tokenized, 25 invalid, 50 skipped/);
    // One event per batch: the table's lanes (src/cli-import.ts) each make batches of at most 500.
    const batches = (await db.query<{ items: number }>("SELECT items FROM audit_events WHERE tenant_id = 'crm' AND action = 'tokenize'")).rows;
    expect(batches.length).toBe(await events());
    expect(batches.every((b) => b.items <= 500)).toBe(true);
    expect(batches.reduce((a, b) => a + b.items, 0)).toBe(2450);
    const rows = (await db.query<{ id: string; phone: string | null; phone_token: string | null }>('SELECT id, phone, phone_token FROM crm_contacts ORDER BY id')).rows;
    expect(rows.filter((r) => r.phone_token !== null)).toHaveLength(2425);
    expect(rows.every((r) => r.phone === null || r.phone === '12345' || /^\(201\) 555-\d{4}$/.test(r.phone))).toBe(true);
    const done = rows.filter((r) => r.phone_token !== null);
    expect(await numbersOf(done.map((r) => r.phone_token!), 'crm')).toEqual(done.map((r) => `+1${r.phone!.replace(/\D/g, '')}`));
    expect(new Set(done.map((r) => r.phone_token)).size).toBe(2425);
  });

  it('with --replace writes the token over the number, and skips rows that already hold tokens', async () => {
    await db.query('CREATE TABLE legacy (k text PRIMARY KEY, tel text)');
    await db.query(`INSERT INTO legacy VALUES ('a', '${NUMBERS.us.e164}'), ('b', '${NUMBERS.gb.e164}'), ('c', 'tok_AAAAAAAAAAAAAAAAAAAAAA')`);
    const res = await run(['import', '--tenant', 'crm', '--table', 'legacy', '--column', 'tel', '--key', 'k', '--replace', '--format', 'phone']);
    expect(res.code).toBe(0);
    expect(res.err).toContain('import: done: 2 rows read, 2 tokenized, 0 invalid, 0 skipped');
    const rows = (await db.query<{ tel: string }>('SELECT tel FROM legacy ORDER BY k')).rows.map((r) => r.tel);
    expect(rows[0]).toMatch(/^\+28[0-9]{13}$/);
    expect(rows[2]).toBe('tok_AAAAAAAAAAAAAAAAAAAAAA');
    expect(await numbersOf(rows.slice(0, 2), 'crm')).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
  });

  it('fits a column checked as E.164 with --format phone, and a refused write says nothing of the row', async () => {
    await db.query(`CREATE TABLE checked (id int PRIMARY KEY, phone text, phone_token text CHECK (phone_token ~ '^\\+[1-9][0-9]{1,14}$'))`);
    await db.query(`INSERT INTO checked VALUES (1, '${NUMBERS.us.e164}'), (2, '${NUMBERS.gb.e164}')`);
    const base = ['import', '--tenant', 'crm', '--table', 'checked', '--column', 'phone', '--key', 'id', '--token-column', 'phone_token'];
    // Opaque tokens break the column's check: the write fails with the driver's code only, never its detail (which
    // quotes the failing row, number and all).
    const opaque = await run(base);
    expect(opaque.code).toBe(1);
    expect(opaque.err).toMatch(/import failed \(\w+ 23514\)/);
    expect(findLeaks(opaque.err)).toEqual([]);
    expect(opaque.err).not.toContain(NUMBERS.us.digits);
    const phone = await run([...base, '--format', 'phone']);
    expect(phone.code).toBe(0);
    const tokens = (await db.query<{ phone_token: string }>('SELECT phone_token FROM checked ORDER BY id')).rows.map((r) => r.phone_token);
    expect(await numbersOf(tokens, 'crm')).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
  });

  it('refuses a key that is the number, a column that cannot hold a token, and a missing table, naming the flag', async () => {
    await db.query('CREATE TABLE loose (id int, uid int UNIQUE, nn int NOT NULL, phone text, token varchar(20), tok16 varchar(16))');
    const base = ['import', '--tenant', 'crm', '--table', 'crm_contacts', '--column', 'phone'];
    const loose = ['import', '--tenant', 'crm', '--table', 'loose', '--column', 'phone'];
    const cases: Array<[string[], RegExp]> = [
      [[...loose, '--key', 'id', '--token-column', 'tok16'], /--key: must be the primary key, or a NOT NULL column with a unique index/],
      [[...loose, '--key', 'uid', '--token-column', 'tok16'], /--key: must be the primary key/],
      [[...loose, '--key', 'nn', '--token-column', 'tok16'], /--key: must be the primary key/],
      [[...base, '--key', 'phone', '--token-column', 'phone_token'], /--key cannot be the column holding the numbers/],
      [[...base, '--key', 'id', '--token-column', 'short_token'], /--token-column: holds 12 characters; an opaque token is 26/],
      [[...base, '--key', 'id', '--token-column', 'short_token', '--format', 'phone'], /--token-column: holds 12 characters; a phone-shaped token is 16/],
      [[...base, '--key', 'id', '--token-column', 'nope'], /--token-column: the table has no such column/],
      [[...base, '--key', 'id'], /--token-column or --replace/],
      [['import', '--tenant', 'crm', '--table', 'nowhere; DROP TABLE tokens', '--column', 'phone', '--key', 'id', '--replace'], /--table: no such table/],
    ];
    for (const [args, message] of cases) {
      const res = await run(args);
      expect(res.code).not.toBe(0);
      expect(res.err).toMatch(message);
    }
    expect(await count('SELECT count(*) AS n FROM tokens')).toBeGreaterThan(0);
  });
});

/** The CLI as its own process, as an operator runs it (a SIGKILL must not take the test with it). */
function spawnImport(args: string[]) {
  const child = spawn(process.execPath, ['bin/phonevault.js', 'import', ...args], {
    env: { PATH: process.env.PATH, DATABASE_URL: database.url, VAULT_MASTER_KEY: masterKey },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return { child, exited, stderr: () => stderr };
}

/** Waits until the run's checkpoint has at least `rows` rows read, then sends the signal. */
async function interruptAt(run: ReturnType<typeof spawnImport>, tenant: string, rows: number, signal: NodeJS.Signals) {
  for (;;) {
    // Summed over the run's lanes (a table's), one checkpoint each.
    const read = await db.query<{ read: number }>(`SELECT coalesce(sum((counts->>'read')::int), 0)::int AS read FROM import_checkpoints WHERE tenant_id = $1`, [tenant]);
    if (read.rows[0]!.read >= rows) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  run.child.kill(signal);
  return run.exited;
}

describe('phonevault import, interrupted', () => {
  const ROWS = 20_000;

  it('killed (SIGKILL) halfway through a file, continues where it stopped: every row once, no number tokenized twice', async () => {
    writeFileSync(file('big.csv'), `n,phone\n${Array.from({ length: ROWS }, (_, i) => `${i},${numberOf(i)}\n`).join('')}`);
    const args = ['--tenant', 'kill-file', '--input', file('big.csv'), '--column', 'phone', '--output', file('big.out.csv'), '--batch-size', '500'];
    expect(await interruptAt(spawnImport(args), 'kill-file', ROWS / 2, 'SIGKILL')).toBe(-1);
    const partial = await tokenRows('kill-file');
    expect(partial).toBeGreaterThanOrEqual(ROWS / 2);
    expect(partial).toBeLessThan(ROWS);
    const resumed = spawnImport(args);
    expect(await resumed.exited).toBe(0);
    expect(resumed.stderr()).toContain(`import: done (resumed): ${ROWS} rows read, ${ROWS} tokenized, 0 invalid, 0 skipped`);
    const lines = readFileSync(file('big.out.csv'), 'utf8').split('\n');
    expect(lines[0]).toBe('n,phone');
    expect(lines.slice(1, -1).map((line) => line.split(',')[0])).toEqual(Array.from({ length: ROWS }, (_, i) => String(i)));
    const tokens = lines.slice(1, -1).map((line) => line.split(',')[1]!);
    expect(await numbersOf(tokens, 'kill-file')).toEqual(Array.from({ length: ROWS }, (_, i) => numberOf(i)));
    // Exactly one token per row: none made twice for a batch the kill cut off.
    expect(await tokenRows('kill-file')).toBe(ROWS);
    expect(new Set(tokens).size).toBe(ROWS);
  });

  it('refuses to continue on another input than the stopped run read, before writing anything', async () => {
    const args = ['--tenant', 'kill-changed', '--input', file('changed.csv'), '--column', 'phone', '--output', file('changed.out.csv'), '--batch-size', '500'];
    const original = readFileSync(file('big.csv'), 'utf8');
    writeFileSync(file('changed.csv'), original);
    expect(await interruptAt(spawnImport(args), 'kill-changed', ROWS / 2, 'SIGKILL')).toBe(-1);
    const written = readFileSync(file('changed.out.csv'));
    // The same length, one digit of an early row changed: only the content differs.
    writeFileSync(file('changed.csv'), original.replace(`\n3,${numberOf(3)}\n`, `\n3,${numberOf(3).slice(0, -1)}${(Number(numberOf(3).at(-1)) + 1) % 10}\n`));
    const refused = await run(['import', ...args]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('the input differs from the one the interrupted run read');
    expect(readFileSync(file('changed.out.csv')).equals(written)).toBe(true);
    // Given its own input back, it continues.
    writeFileSync(file('changed.csv'), original);
    const resumed = await run(['import', ...args]);
    expect(resumed.code).toBe(0);
    expect(await tokenRows('kill-changed')).toBe(ROWS);
  });

  it('killed halfway through a table, continues where it stopped', async () => {
    await db.query('CREATE TABLE kill_table (id int PRIMARY KEY, phone text, token text)');
    await db.query(`INSERT INTO kill_table SELECT g, '+1201555' || (1000 + g % 9000), NULL FROM generate_series(0, ${ROWS - 1}) g`);
    const args = ['--tenant', 'kill-table', '--table', 'kill_table', '--column', 'phone', '--key', 'id', '--token-column', 'token', '--batch-size', '500'];
    expect(await interruptAt(spawnImport(args), 'kill-table', ROWS / 2, 'SIGKILL')).toBe(-1);
    const resumed = spawnImport(args);
    expect(await resumed.exited).toBe(0);
    expect(resumed.stderr()).toContain(`rows read`);
    const rows = (await db.query<{ id: number; token: string | null }>('SELECT id, token FROM kill_table ORDER BY id')).rows;
    expect(rows.every((r) => r.token !== null)).toBe(true);
    expect(await numbersOf(rows.map((r) => r.token!), 'kill-table')).toEqual(rows.map((r) => numberOf(r.id)));
    expect(await tokenRows('kill-table')).toBe(ROWS);
  });

  it('refuses a second copy of a run under way, and keeps its output exact while the tenant\'s audit head moves under it', async () => {
    const args = ['--tenant', 'busy-file', '--input', file('big.csv'), '--column', 'phone', '--output', file('busy.out.csv'), '--batch-size', '500'];
    const first = spawnImport(args);
    for (;;) {
      const read = await db.query<{ read: number }>(`SELECT (counts->>'read')::int AS read FROM import_checkpoints WHERE tenant_id = 'busy-file'`);
      if ((read.rows[0]?.read ?? 0) >= 1000) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const second = await run(['import', ...args]);
    expect(second.code).toBe(1);
    expect(second.err).toContain('another run of this import is under way');
    // Meanwhile the application tokenizes for the same tenant: the import's commits find the head moved and are
    // run again by the audit log, which must neither count a batch twice nor move its output.
    let others = 0;
    let running = true;
    void first.exited.then(() => (running = false));
    while (running) {
      await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant: 'busy-file', scope: 'tokenize' }), payload: { phone: NUMBERS.us.e164 } });
      others++;
    }
    expect(await first.exited).toBe(0);
    expect(first.stderr()).toContain(`import: done: ${ROWS} rows read, ${ROWS} tokenized, 0 invalid, 0 skipped`);
    const text = readFileSync(file('busy.out.csv'), 'utf8');
    expect(text.includes('\0')).toBe(false);
    const lines = text.split('\n');
    expect(lines[0]).toBe('n,phone');
    expect(lines).toHaveLength(ROWS + 2);
    const tokens = lines.slice(1, -1).map((line) => line.split(',')[1]!);
    expect(await numbersOf(tokens, 'busy-file')).toEqual(Array.from({ length: ROWS }, (_, i) => numberOf(i)));
    expect(await tokenRows('busy-file')).toBe(ROWS + others);
  });

  it('stopped with SIGINT, finishes its batch, says so, exits 130, and the next run completes', async () => {
    const args = ['--tenant', 'int-file', '--input', file('big.csv'), '--column', 'phone', '--output', file('int.out.csv'), '--batch-size', '500', '--format', 'phone'];
    const first = spawnImport(args);
    expect(await interruptAt(first, 'int-file', ROWS / 4, 'SIGINT')).toBe(130);
    expect(first.stderr()).toMatch(/import: interrupted after \d+ rows read, \d+ tokenized, 0 invalid, 0 skipped; run it again with the same arguments to continue/);
    const second = spawnImport(args);
    expect(await second.exited).toBe(0);
    const tokens = readFileSync(file('int.out.csv'), 'utf8').split('\n').slice(1, -1).map((line) => line.split(',')[1]!);
    expect(tokens).toHaveLength(ROWS);
    expect(tokens.every((tok) => /^\+28[0-9]{13}$/.test(tok))).toBe(true);
    expect(await tokenRows('int-file')).toBe(ROWS);
  });
});
