import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainHash, GENESIS_HASH, legacyChainHash } from '../../src/audit/chain.js';
import { encodeFields } from '../../src/crypto/aead.js';
import { envKekSet, parseMasterKeys } from '../../src/crypto/master-keys.js';
import { loadAuditKey } from '../../src/store/audit-key.js';
import { createPgDb, type Db } from '../../src/store/db.js';
import { bearer, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';
import { asVaultRole } from '../helpers/roles.js';
import { createVaultDatabase } from '../helpers/vault-database.js';

// Issue 14, item 4: the trail is tamper-evident against the vault's own database role, and against whoever can
// rewrite the database but not the logs.
const masterKey = randomBytes(32).toString('base64');
let database: Awaited<ReturnType<typeof createVaultDatabase>>;
let owner: Db;
let served: Db;
let t: TestApp;
const run = (argv: string[]) => database.run(argv);

beforeAll(async () => {
  database = await createVaultDatabase(masterKey);
  owner = database.db;
  served = createPgDb({ connectionString: asVaultRole(database.url), max: 2 });
  t = await database.app();
});
afterAll(async () => {
  await served.close();
  await database.drop();
});

/** As a superuser could: with the append-only triggers out of the way. */
async function tamper(sql: string, values: unknown[] = []) {
  await owner.transact(async (tx) => {
    // Passed on to the workers too when the suite runs on Citus (test/helpers/citus.ts); a no-op elsewhere.
    await tx.query(`SET LOCAL citus.propagate_set_commands = 'local'`);
    await tx.query('SET LOCAL session_replication_role = replica');
    await tx.query(sql, values);
  });
}

async function someEvents(tenant: string, n: number) {
  const headers = bearer({ tenant, scope: 'tokenize' });
  for (let i = 0; i < n; i++) await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: NUMBERS.us.e164 } });
}

/** The checkpoint lines the vault logged (what an operator ships to write-once storage), as a file. */
function checkpointsFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'pv-checkpoints-')), 'vault.log');
  writeFileSync(file, `${t.rawLogs.join('\n')}\n`);
  return file;
}

describe('the serving role', () => {
  it('cannot delete, prune, truncate or edit audit events, whatever it sets', async () => {
    await someEvents('roles', 2);
    for (const sql of [
      `DELETE FROM audit_events WHERE tenant_id = 'roles'`,
      `UPDATE audit_events SET items = 0 WHERE tenant_id = 'roles'`,
      'TRUNCATE audit_events',
      `DELETE FROM audit_heads WHERE tenant_id = 'roles'`,
    ]) {
      await expect(served.query(sql), sql).rejects.toMatchObject({ code: '42501' });
    }
    // The retention switch of earlier releases opens nothing to a role without the privilege.
    await expect(
      served.transact(async (tx) => {
        await tx.query(`SELECT set_config('phonevault.audit_retention', 'on', true)`);
        await tx.query(`DELETE FROM audit_events WHERE tenant_id = 'roles'`);
      }),
    ).rejects.toMatchObject({ code: '42501' });
    // The tenant's first keys and the two calls.
    expect(Number((await owner.query<{ n: string }>(`SELECT count(*) AS n FROM audit_events WHERE tenant_id = 'roles'`)).rows[0]!.n)).toBe(3);
  });
});

describe('audit verify', () => {
  it('finds an edit re-chained with the only hash someone with the database alone can compute', async () => {
    await someEvents('rechained', 4);
    expect((await run(['audit', 'verify', '--tenant', 'rechained'])).code).toBe(0);
    // Edit event 2 and re-chain 2..4 with SHA-256 over the same encoding, as the unkeyed chain allowed, head too.
    const rows = (await owner.query<{ seq: string; occurred_at: Date; client: string; action: string; items: number; outcome: string; request_id: string | null; purpose: string | null; hash: Buffer }>(
      `SELECT * FROM audit_events WHERE tenant_id = 'rechained' ORDER BY seq`,
    )).rows;
    let previous = rows[0]!.hash;
    for (const row of rows.slice(1)) {
      const items = row.seq === '2' ? 0 : row.items;
      const fields = ['phonevault:audit:v2', 'rechained', row.seq, String(row.occurred_at.getTime()), row.client, row.action, String(items), row.outcome, row.request_id ?? '', row.purpose ?? ''];
      const hash = createHash('sha256').update(previous).update(encodeFields(fields)).digest();
      await tamper(`UPDATE audit_events SET items = $2, hash = $3 WHERE tenant_id = 'rechained' AND seq = $1::bigint`, [row.seq, items, hash]);
      previous = hash;
    }
    await tamper(`UPDATE audit_heads SET hash = $1 WHERE tenant_id = 'rechained'`, [previous]);
    const res = await run(['audit', 'verify', '--tenant', 'rechained']);
    expect(res.code).toBe(1);
    expect(res.out).toContain('BROKEN tenant rechained: event 2 was edited');
  });

  it('finds the last events deleted and the head moved back, against the checkpoints the vault logged', async () => {
    await someEvents('truncated', 5);
    await t.app.close(); // writes the last checkpoints, as a shutdown does
    const file = checkpointsFile();
    t = await database.app();
    const intact = await run(['audit', 'verify', '--tenant', 'truncated', '--checkpoints', file]);
    expect(intact.code).toBe(0);
    expect(intact.out).toContain('reaches checkpoint 6'); // the tenant's first keys, and the five calls
    // Delete events 4 and 5 and move the head back to event 3: consistent in the database alone.
    const third = (await owner.query<{ hash: Buffer }>(`SELECT hash FROM audit_events WHERE tenant_id = 'truncated' AND seq = 3`)).rows[0]!.hash;
    await tamper(`DELETE FROM audit_events WHERE tenant_id = 'truncated' AND seq > 3`);
    await tamper(`UPDATE audit_heads SET seq = 3, hash = $1 WHERE tenant_id = 'truncated'`, [third]);
    expect((await run(['audit', 'verify', '--tenant', 'truncated'])).code).toBe(0); // undetectable without them
    const res = await run(['audit', 'verify', '--tenant', 'truncated', '--checkpoints', file]);
    expect(res.code).toBe(1);
    expect(res.out).toContain('BROKEN tenant truncated: the chain ends at event 3, short of the checkpoint at 6');
    // A forged checkpoint line counts for nothing, and is said.
    writeFileSync(file, `${JSON.stringify({ msg: 'audit checkpoint', tenant: 'truncated', seq: 3, hash: third.toString('hex'), mac: '00'.repeat(32) })}\n`);
    const forged = await run(['audit', 'verify', '--tenant', 'truncated', '--checkpoints', file]);
    expect(forged.out).toContain('WARNING 1 checkpoint line(s) carry no valid signature');
    expect(forged.code).toBe(1);
  });

  it('finds a chain rewound and written on past its checkpoints, and the running vault says it was rewound', async () => {
    await someEvents('rewound', 6);
    await t.app.close(); // the checkpoint at 7 (the tenant's first keys, six calls) goes to the log
    const logged = checkpointsFile();
    t = await database.app();
    await someEvents('rewound', 1); // this instance now knows the head at 8
    // Rewind to event 3, then let the vault write on past 8: the chain is consistent, longer than the checkpoint,
    // and its event 7 is not the one the log signed.
    const third = (await owner.query<{ hash: Buffer }>(`SELECT hash FROM audit_events WHERE tenant_id = 'rewound' AND seq = 3`)).rows[0]!.hash;
    await tamper(`DELETE FROM audit_events WHERE tenant_id = 'rewound' AND seq > 3`);
    await tamper(`UPDATE audit_heads SET seq = 3, hash = $1 WHERE tenant_id = 'rewound'`, [third]);
    await someEvents('rewound', 6);
    expect(t.logs.some((line) => line.msg === 'audit head moved backwards: the trail was rewound outside the vault' && line.tenant === 'rewound' && line.seq === 3)).toBe(true);
    await t.app.close();
    const later = checkpointsFile();
    t = await database.app();
    // Against the old checkpoints alone, and against old and new together (the log holds both).
    const old = await run(['audit', 'verify', '--tenant', 'rewound', '--checkpoints', logged]);
    expect(old.code).toBe(1);
    expect(old.out).toContain('BROKEN tenant rewound: event 7 is not the event the checkpoint recorded');
    writeFileSync(later, `${readFileSync(logged, 'utf8')}${readFileSync(later, 'utf8')}`);
    const both = await run(['audit', 'verify', '--tenant', 'rewound', '--checkpoints', later]);
    expect(both.code).toBe(1);
    expect(both.out).toContain('BROKEN tenant rewound: event 7 is not the event the checkpoint recorded');
  });

  it('reports a tenant the checkpoints name and the database no longer knows at all', async () => {
    await someEvents('vanished', 3);
    await t.app.close();
    const file = checkpointsFile();
    t = await database.app();
    for (const table of ['audit_events', 'audit_heads', 'tokens', 'data_keys', 'tenant_keys']) await tamper(`DELETE FROM ${table} WHERE tenant_id = 'vanished'`);
    const res = await run(['audit', 'verify', '--checkpoints', file]);
    expect(res.code).toBe(1);
    expect(res.out).toContain('BROKEN tenant vanished: has no audit head row, though it has events, keys or logged checkpoints');
  });

  it('reports a tenant whose head row was deleted, never skips it', async () => {
    await someEvents('headless', 2);
    await owner.query(`DELETE FROM audit_heads WHERE tenant_id = 'headless'`);
    const res = await run(['audit', 'verify']);
    expect(res.code).toBe(1);
    expect(res.out).toContain('BROKEN tenant headless: has no audit head row, though it has events, keys or logged checkpoints');
  });

  it('finds an anchor moved forward to hide a prefix of the chain', async () => {
    await someEvents('prefix', 4);
    const second = (await owner.query<{ hash: Buffer }>(`SELECT hash FROM audit_events WHERE tenant_id = 'prefix' AND seq = 2`)).rows[0]!.hash;
    await tamper(`DELETE FROM audit_events WHERE tenant_id = 'prefix' AND seq <= 2`);
    await tamper(`UPDATE audit_heads SET anchor_seq = 2, anchor_hash = $1 WHERE tenant_id = 'prefix'`, [second]);
    const res = await run(['audit', 'verify', '--tenant', 'prefix']);
    expect(res.code).toBe(1);
    expect(res.out).toContain('nothing signs that start');
  });

  // A database upgraded from a release before the keyed chain: events 1–3 are on the unkeyed chain.
  it('reports an unkeyed start as unsigned until sealed, and refuses a keyed chain passed off as unkeyed', async () => {
    await someEvents('legacy', 5);
    const rows = (await owner.query<{ seq: string; occurred_at: Date; client: string; action: string; items: number; outcome: string; request_id: string | null; purpose: string | null; hash: Buffer }>(
      `SELECT * FROM audit_events WHERE tenant_id = 'legacy' ORDER BY seq`,
    )).rows;
    // What the earlier release wrote for 1–3, and the keyed chain continuing from it for 4–5, as the vault would.
    const auditKey = await loadAuditKey(owner, envKekSet(parseMasterKeys(masterKey)));
    let previous: Buffer = GENESIS_HASH;
    for (const row of rows) {
      const event = { tenant: 'legacy', client: row.client, action: row.action, items: row.items, outcome: row.outcome, requestId: row.request_id, purpose: row.purpose, occurredAt: row.occurred_at };
      const seq = Number(row.seq);
      const hash = seq <= 3 ? legacyChainHash(previous, seq, event) : chainHash(auditKey, previous, seq, event);
      await tamper(`UPDATE audit_events SET hash = $2 WHERE tenant_id = 'legacy' AND seq = $1`, [seq, hash]);
      previous = hash;
    }
    await tamper(`UPDATE audit_heads SET hash = $1, keyed_after = 3 WHERE tenant_id = 'legacy'`, [previous]);
    const before = await run(['audit', 'verify', '--tenant', 'legacy']);
    expect(before.code).toBe(1);
    expect(before.out).toContain('with 3 unkeyed event(s), and nothing signs that start');
    const sealed = await run(['audit', 'seal', '--tenant', 'legacy']);
    expect(sealed.out).toContain('sealed tenant legacy');
    expect((await run(['audit', 'verify', '--tenant', 'legacy'])).code).toBe(0);
    // Once sealed, the boundary cannot be moved: claiming more of the chain is unkeyed breaks the signature.
    await tamper(`UPDATE audit_heads SET keyed_after = 5 WHERE tenant_id = 'legacy'`);
    const moved = await run(['audit', 'verify', '--tenant', 'legacy']);
    expect(moved.code).toBe(1);
    expect(moved.out).toContain("the audit head's anchor or legacy boundary was changed");
  });
});
