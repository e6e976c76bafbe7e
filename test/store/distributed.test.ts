import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgDb } from '../../src/store/db.js';
import { bearer, type TestApp } from '../helpers/build.js';
import { CITUS_WORKERS, DISTRIBUTED } from '../helpers/citus.js';
import { NUMBERS } from '../helpers/numbers.js';
import { createVaultDatabase } from '../helpers/vault-database.js';

// Issue 21: the vault on a Citus coordinator with two workers (TEST_CITUS_WORKERS; test/helpers/citus.ts), with two
// tenants whose rows live on different workers, through every route and every command. Skipped on plain Postgres.
const masterKey = randomBytes(32).toString('base64');
let database: Awaited<ReturnType<typeof createVaultDatabase>>;
let t: TestApp;
const tenants: string[] = [];
const workerOf = new Map<string, string>();

/** The worker holding the tenant's shard of `table`, as host:port, and that shard's table name. */
async function placement(table: string, tenant: string): Promise<{ worker: string; shard: string }> {
  const { rows } = await database.db.query<{ worker: string; shard: string }>(
    `SELECT n.nodename || ':' || n.nodeport AS worker, $1::text || '_' || p.shardid AS shard FROM pg_dist_placement p JOIN pg_dist_node n ON n.groupid = p.groupid
     WHERE p.shardid = get_shard_id_for_distribution_column($1::text::regclass, $2::text)`,
    [table, tenant],
  );
  return rows[0]!;
}

/** The tenant's rows of `table` counted on its worker, in the shard itself: where the data really is. */
async function rowsOnWorker(table: string, tenant: string): Promise<number> {
  const { worker, shard } = await placement(table, tenant);
  const url = new URL(database.url);
  url.host = worker;
  const db = createPgDb({ connectionString: url.toString(), max: 1, queryTimeoutMs: 60_000 });
  try {
    return Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${shard} WHERE tenant_id = $1`, [tenant])).rows[0]!.n);
  } finally {
    await db.close();
  }
}

beforeAll(async () => {
  if (!DISTRIBUTED) return;
  database = await createVaultDatabase(masterKey);
  t = await database.app();
  // Two tenants on different workers.
  for (let i = 0; tenants.length < 2 && i < 100; i++) {
    const { worker } = await placement('tokens', `tenant-${i}`);
    if ([...workerOf.values()].includes(worker)) continue;
    workerOf.set(`tenant-${i}`, worker);
    tenants.push(`tenant-${i}`);
  }
}, 120_000);
afterAll(async () => {
  if (DISTRIBUTED) await database.drop();
});

const ALL = 'tokenize detokenize lookup erase admin audit:read';
const call = (tenant: string, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object, headers: Record<string, string> = {}) =>
  t.app.inject({ method, url, headers: { ...bearer({ tenant, scope: ALL }), ...headers }, ...(payload ? { payload } : {}) });

describe.skipIf(!DISTRIBUTED)('the vault distributed by tenant on Citus', () => {
  it('puts its two tenants on different workers, and every tenant table is co-located with tenant_keys', async () => {
    expect(new Set(workerOf.values()).size).toBe(2);
    expect(CITUS_WORKERS).toEqual(expect.arrayContaining([...workerOf.values()]));
    const { rows } = await database.db.query<{ name: string; colocated: boolean }>(
      `SELECT logicalrelid::regclass::text AS name, colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'tenant_keys'::regclass) AS colocated
       FROM pg_dist_partition ORDER BY 1`,
    );
    expect(rows.every((row) => row.colocated)).toBe(true);
    expect(rows.map((row) => row.name).sort()).toEqual(['audit_events', 'audit_heads', 'data_keys', 'idempotency_keys', 'import_checkpoints', 'tenant_keys', 'tokens']);
  });

  it('places the table a later migration creates, as distribute would', async () => {
    // Migration 008 again, as if the database had been distributed before it was released.
    await database.db.query('DROP TABLE import_checkpoints');
    await database.db.query('DELETE FROM schema_migrations WHERE version = 8');
    const migrated = await database.run(['migrate']);
    expect(migrated.out).toBe('applied 008_import_checkpoints.sql');
    const { rows } = await database.db.query<{ colocated: boolean }>(
      `SELECT colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'tenant_keys'::regclass) AS colocated
       FROM pg_dist_partition WHERE logicalrelid = 'import_checkpoints'::regclass`,
    );
    expect(rows).toEqual([{ colocated: true }]);
    expect((await database.run(['distribute'])).out).toBe('already distributed');
  });

  it('serves every route for each tenant, with its rows on its own worker', async () => {
    for (const tenant of tenants) {
      const single = await call(tenant, 'POST', '/v1/tokenize', { phone: NUMBERS.us.e164 });
      expect(single.statusCode).toBe(201);
      const token = single.json().token as string;
      const [first, again] = [await call(tenant, 'POST', '/v1/tokenize', { phone: NUMBERS.gb.e164, deterministic: true }), await call(tenant, 'POST', '/v1/tokenize', { phone: NUMBERS.gb.e164, deterministic: true })];
      expect(again.json().token).toBe(first.json().token);
      const shaped = await call(tenant, 'POST', '/v1/tokenize', { phone: NUMBERS.de.e164, format: 'phone' });
      expect(shaped.json().token).toMatch(/^\+28\d{13}$/);
      const batch = await call(tenant, 'POST', '/v1/tokenize/batch', { items: [{ phone: NUMBERS.fr.e164 }, { phone: NUMBERS.invalid.e164 }] });
      expect(batch.json().results.map((r: { token?: string }) => Boolean(r.token))).toEqual([true, false]);
      const keyed = await call(tenant, 'POST', '/v1/tokenize', { phone: NUMBERS.fr.e164 }, { 'idempotency-key': `k-${tenant}` });
      const replayed = await call(tenant, 'POST', '/v1/tokenize', { phone: NUMBERS.fr.e164 }, { 'idempotency-key': `k-${tenant}` });
      expect(replayed.json().token).toBe(keyed.json().token);

      const plain = await call(tenant, 'POST', '/v1/detokenize', { tokens: [token, shaped.json().token] });
      expect(plain.json().results.map((r: { phone: string }) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.de.e164]);
      const masked = await call(tenant, 'POST', '/v1/detokenize', { tokens: [token], redaction: 'masked' });
      expect(masked.json().results[0].masked).toMatch(/^\+1\*+\d{4}$/);
      expect((await call(tenant, 'POST', '/v1/lookup', { phone: NUMBERS.gb.e164 })).json().tokens).toEqual([first.json().token]);
      expect((await call(tenant, 'GET', `/v1/tokens/${token}`)).json().country).toBe('US');
      // Another tenant's token is not found here, wherever its row is.
      const other = tenants.find((name) => name !== tenant)!;
      expect((await call(other, 'GET', `/v1/tokens/${token}`)).statusCode).toBe(404);

      expect((await call(tenant, 'POST', '/v1/erase', { phone: NUMBERS.fr.e164 })).json().erased).toBe(2);
      expect((await call(tenant, 'DELETE', `/v1/tokens/${shaped.json().token}`)).statusCode).toBe(204);

      expect((await call(tenant, 'POST', '/v1/keys/rotate')).statusCode).toBe(200);
      expect((await call(tenant, 'GET', '/v1/keys')).json().keys.map((k: { state: string }) => k.state)).toEqual(['retired', 'active']);
      const apiKey = await call(tenant, 'POST', '/v1/api-keys', { name: 'crm', scopes: ['tokenize'] });
      expect(apiKey.statusCode).toBe(201);
      expect((await call(tenant, 'GET', '/v1/api-keys')).json().keys).toHaveLength(1);
      const viaKey = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${apiKey.json().key}` }, payload: { phone: NUMBERS.us.e164 } });
      expect(viaKey.statusCode).toBe(201);
      expect((await call(tenant, 'DELETE', `/v1/api-keys/${apiKey.json().id}`)).statusCode).toBe(204);
      expect((await t.app.inject({ method: 'GET', url: '/metrics' })).body).toMatch(/^phonevault_data_keys\{state="active"\} [1-9]/m);
      const events = (await call(tenant, 'GET', '/v1/audit?limit=100')).json().events as Array<{ action: string }>;
      expect(events.map((e) => e.action)).toEqual(expect.arrayContaining(['tokenize', 'detokenize', 'lookup', 'metadata', 'erase', 'keys_rotate', 'keys_list']));

      // On its own worker: the tenant's tokens, events and head; on the other worker, none.
      expect(await rowsOnWorker('tokens', tenant)).toBeGreaterThan(0);
      expect(await rowsOnWorker('audit_events', tenant)).toBe(events.length + 1);
      expect(await rowsOnWorker('audit_heads', tenant)).toBe(1);
    }
  });

  it('runs every command: rewrap, keys destroy, sweep, import, apikey, audit verify and prune, tenant destroy', async () => {
    const [north, south] = tenants as [string, string];
    expect((await database.run(['rewrap'])).code).toBe(0);
    await database.db.query(`UPDATE data_keys SET retired_at = now() - interval '1 minute' WHERE tenant_id = $1 AND version = 1`, [north]);
    const destroyed = await database.run(['keys', 'destroy', '--tenant', north, '--version', '1']);
    expect(destroyed.out).toContain(`destroyed data key version 1 of tenant ${north}`);

    const expiring = (await call(south, 'POST', '/v1/tokenize', { phone: NUMBERS.us.e164, ttlSeconds: 60 })).json().token as string;
    await database.db.query(`UPDATE tokens SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND expires_at IS NOT NULL`, [south]);
    const swept = await database.run(['sweep']);
    expect(swept.code).toBe(0);
    expect(swept.out).toMatch(/deleted 1 expired token\(s\)/);
    expect((await call(south, 'GET', `/v1/tokens/${expiring}`)).statusCode).toBe(404);

    const dir = mkdtempSync(join(tmpdir(), 'pv-citus-'));
    writeFileSync(join(dir, 'in.csv'), `id,phone\n1,${NUMBERS.gb.e164}\n2,${NUMBERS.invalid.e164}\n`);
    const imported = await database.run(['import', '--tenant', south, '--input', join(dir, 'in.csv'), '--column', 'phone', '--output', join(dir, 'out.csv')]);
    expect(imported.code).toBe(1);
    expect(imported.err).toContain('import: done: 2 rows read, 1 tokenized, 1 invalid, 0 skipped');
    const output = readFileSync(join(dir, 'out.csv'), 'utf8');
    expect(output).toMatch(/^id,phone\n1,tok_[\w-]{22}\n2,\n$/);
    const kept = /tok_[\w-]{22}/.exec(output)![0];

    const made = await database.run(['apikey', 'create', '--tenant', south, '--name', 'batch', '--scope', 'tokenize']);
    expect(made.code).toBe(0);
    expect((await database.run(['apikey', 'list', '--tenant', south])).out).toContain('batch');

    const verified = await database.run(['audit', 'verify']);
    expect(verified.code).toBe(0);
    for (const tenant of tenants) expect(verified.out).toContain(tenant);
    // The shards' triggers refuse what the table's refuse on one node: no update, no delete outside prune.
    await expect(database.db.query('UPDATE audit_events SET items = 0 WHERE tenant_id = $1', [south])).rejects.toThrow(/append-only/);
    await expect(database.db.query('DELETE FROM audit_events WHERE tenant_id = $1', [south])).rejects.toThrow(/append-only/);
    const nextMonth = new Date();
    nextMonth.setUTCMonth(nextMonth.getUTCMonth() + 1, 1);
    const pruned = await database.run(['audit', 'prune', '--before', nextMonth.toISOString().slice(0, 7)]);
    expect(pruned.code).toBe(0);
    expect(await rowsOnWorker('audit_events', north)).toBeLessThanOrEqual(1);
    expect((await database.run(['audit', 'verify'])).code).toBe(0);

    const gone = await database.run(['tenant', 'destroy', north, '--yes']);
    expect(gone.code).toBe(0);
    expect(await rowsOnWorker('tokens', north)).toBe(0);
    expect(await rowsOnWorker('tokens', south)).toBeGreaterThan(0);

    // Every wrapped key of every tenant moved to a new master key, read across the shards.
    const next = randomBytes(32).toString('base64');
    const moved = await database.run(['keys', 'rewrap-master'], `next:${next},default:${masterKey}`);
    expect(moved.code).toBe(0);
    expect(moved.out).toMatch(/^re-wrapped [1-9]\d* key\(s\) under the active master key; no key is wrapped by "default" any more/);
    const after = await database.app(`next:${next}`);
    expect((await after.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant: south, scope: 'detokenize' }), payload: { tokens: [kept] } })).json().results[0].phone).toBe(NUMBERS.gb.e164);
  });
});
