import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.js';
import { createPgDb, type Db } from '../../src/store/db.js';
import { AUDIENCE, ISSUER, JWT_SECRET, mintJwt } from '../helpers/build.js';
import { createTestDatabase } from '../helpers/database.js';
import { recordLogLine } from '../helpers/log-sink.js';

const BIN = new URL('../../bin/phonevault.js', import.meta.url).pathname;
const masterKey = randomBytes(32).toString('base64');
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;

const env = () => ({ DATABASE_URL: database.url, VAULT_MASTER_KEY: masterKey, JWT_SECRET, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, PORT: '0' });
const batch = Array.from({ length: 1000 }, (_, i) => ({ phone: `+1201555${String(4000 + i)}` }));
const countTokens = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM tokens')).rows[0]!.n);

/** Makes every insert into tokens take a second, so that a fault can land while the batch's statement runs. */
async function slowInserts(on: boolean) {
  await db.query(on ? `CREATE OR REPLACE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
    CREATE TRIGGER slow_insert BEFORE INSERT ON tokens FOR EACH STATEMENT EXECUTE FUNCTION slow_insert()` : 'DROP TRIGGER IF EXISTS slow_insert ON tokens');
}

async function startVault() {
  const child = spawn(process.execPath, [BIN, 'serve'], { env: { PATH: process.env.PATH, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const match = /"url":"(http:\/\/[^"]+)"/.exec(stdout);
      if (match) resolve(match[1]!);
    });
    child.once('exit', () => reject(new Error('vault exited')));
  });
  return { child, url, logs: () => stdout };
}

const waitForInsert = async () => {
  for (let i = 0; i < 100; i++) {
    const running = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%INSERT INTO tokens%' AND query NOT LIKE '%pg_stat_activity%' AND state = 'active'`);
    if (running.rows[0]) return running.rows[0].pid;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the batch insert never started');
};

beforeAll(async () => {
  database = await createTestDatabase();
  expect(await main(['migrate'], env(), () => {}, () => {})).toBe(0);
  db = createPgDb({ connectionString: database.url, max: 2 });
});
afterAll(async () => {
  await db.close();
  await database.drop();
});

describe('faults', () => {
  it('a database connection killed mid-batch stores none of it, answers 503, and the vault carries on', async () => {
    const vault = await startVault();
    try {
      await slowInserts(true);
      const before = await countTokens();
      const pending = fetch(`${vault.url}/v1/tokenize/batch`, { method: 'POST', headers: { authorization: `Bearer ${mintJwt()}`, 'content-type': 'application/json' }, body: JSON.stringify({ items: batch }) });
      const pid = await waitForInsert();
      await db.query('SELECT pg_terminate_backend($1::int)', [pid]);
      const res = await pending;
      expect(res.status).toBe(503);
      expect(((await res.json()) as { code: string }).code).toBe('unavailable');
      expect(await countTokens()).toBe(before);
      await slowInserts(false);
      const again = await fetch(`${vault.url}/v1/tokenize/batch`, { method: 'POST', headers: { authorization: `Bearer ${mintJwt()}`, 'content-type': 'application/json' }, body: JSON.stringify({ items: batch }) });
      expect(again.status).toBe(200);
      expect(await countTokens()).toBe(before + 1000);
    } finally {
      await slowInserts(false);
      vault.child.kill('SIGTERM');
      await new Promise((resolve) => vault.child.once('exit', resolve));
      for (const line of vault.logs().split('\n').filter(Boolean)) recordLogLine(line);
    }
  });

  it('a vault killed with SIGKILL mid-batch leaves all of the batch or none of it', async () => {
    const vault = await startVault();
    await slowInserts(true);
    try {
      const before = await countTokens();
      fetch(`${vault.url}/v1/tokenize/batch`, { method: 'POST', headers: { authorization: `Bearer ${mintJwt()}`, 'content-type': 'application/json' }, body: JSON.stringify({ items: batch }) }).catch(() => undefined);
      await waitForInsert();
      vault.child.kill('SIGKILL');
      await new Promise((resolve) => vault.child.once('exit', resolve));
      // Let the orphaned statement finish or be cancelled.
      for (let i = 0; i < 100; i++) {
        const running = await db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%INSERT INTO tokens%' AND query NOT LIKE '%pg_stat_activity%' AND state = 'active'`);
        if (running.rowCount === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect([before, before + 1000]).toContain(await countTokens());
    } finally {
      await slowInserts(false);
      // A failure before the kill above would otherwise leave this vault running after the suite.
      if (vault.child.exitCode === null && vault.child.signalCode === null) vault.child.kill('SIGKILL');
    }
  });

  it('a missing or wrong master key stops start-up with a clear message and writes nothing', async () => {
    const snapshot = async () =>
      (await db.query<{ t: string }>(`SELECT (SELECT count(*) FROM master_key_checks) || '/' || (SELECT count(*) FROM data_keys) || '/' || (SELECT count(*) FROM audit_events) AS t`)).rows[0]!.t;
    const before = await snapshot();
    for (const [key, message] of [
      [undefined, 'VAULT_MASTER_KEY: is required'],
      ['', 'VAULT_MASTER_KEY: is required'],
      [randomBytes(32).toString('base64'), 'is not the one this database was written with'],
      [`other:${randomBytes(32).toString('base64')}`, 'which is not configured'],
    ] as const) {
      const err: string[] = [];
      const code = await main(['serve'], { ...env(), VAULT_MASTER_KEY: key }, () => {}, (text) => err.push(text));
      expect(code).toBe(78);
      expect(err.join('\n')).toContain(message);
    }
    expect(await snapshot()).toBe(before);
  });

  it('a key whose check value is gone must open a key wrapped under its id before a new check value is recorded', async () => {
    const saved = (await db.query<{ kek_id: string; check_value: Buffer }>('SELECT kek_id, check_value FROM master_key_checks')).rows;
    expect(saved.map((row) => row.kek_id)).toEqual(['default']);
    await db.query('DELETE FROM master_key_checks');
    try {
      const err: string[] = [];
      const code = await main(['audit', 'verify'], { ...env(), VAULT_MASTER_KEY: randomBytes(32).toString('base64') }, () => {}, (text) => err.push(text));
      expect(code).toBe(78);
      expect(err.join('\n')).toContain('VAULT_MASTER_KEY: the key with id "default" does not open the keys wrapped under that id');
      expect((await db.query('SELECT 1 FROM master_key_checks')).rowCount).toBe(0);
      // The right key opens them, and its check value is recorded again.
      expect(await main(['audit', 'verify'], env(), () => {}, () => {})).toBe(0);
      expect((await db.query('SELECT kek_id FROM master_key_checks')).rows).toEqual([{ kek_id: 'default' }]);
    } finally {
      await db.query('DELETE FROM master_key_checks');
      for (const row of saved) await db.query('INSERT INTO master_key_checks (kek_id, check_value) VALUES ($1, $2)', [row.kek_id, row.check_value]);
    }
  });
});
