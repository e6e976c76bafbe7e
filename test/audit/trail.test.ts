import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/store/db.js';
import { bearer, type TestApp } from '../helpers/build.js';
import { createVaultDatabase } from '../helpers/vault-database.js';
import { findLeaks, NUMBERS } from '../helpers/numbers.js';

const masterKey = randomBytes(32).toString('base64');
let database: Awaited<ReturnType<typeof createVaultDatabase>>;
let db: Db;
let t: TestApp;
const run = (argv: string[]) => database.run(argv);

beforeAll(async () => {
  database = await createVaultDatabase(masterKey);
  db = database.db;
  t = await database.app();
});
afterAll(async () => {
  await database.drop();
});

const events = async (tenant = 'acme') =>
  (await db.query<{ seq: string; client: string; action: string; items: number; outcome: string; request_id: string | null; purpose: string | null }>(
    'SELECT seq, client, action, items, outcome, request_id, purpose FROM audit_events WHERE tenant_id = $1 ORDER BY seq',
    [tenant],
  )).rows;

/** Postgres itself refuses to change the table; a superuser turning triggers off is the attacker modelled here. */
async function tamper(sql: string, values: unknown[] = []) {
  await db.transact(async (tx) => {
    // Passed on to the workers too when the suite runs on Citus (test/helpers/citus.ts); a no-op elsewhere.
    await tx.query(`SET LOCAL citus.propagate_set_commands = 'local'`);
    await tx.query('SET LOCAL session_replication_role = replica');
    await tx.query(sql, values);
  });
}

/** Events 5 and 6 trade places, each keeping its fields and hash. */
async function swapEvents5And6() {
  await tamper(`UPDATE audit_events SET seq = seq + 1000 WHERE tenant_id = 'acme' AND seq IN (5, 6)`);
  await tamper(`UPDATE audit_events SET seq = CASE seq WHEN 1005 THEN 6 ELSE 5 END WHERE tenant_id = 'acme' AND seq IN (1005, 1006)`);
}

describe('audit trail', () => {
  it('records every audited call with client, action, items, outcome, request id and a sanitised purpose', async () => {
    const writer = { ...bearer({ sub: 'crm', scope: 'tokenize detokenize detokenize:masked lookup erase admin' }), 'x-purpose': 'support:INC-4711' };
    const tokenized = await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers: writer, payload: { items: [{ phone: NUMBERS.us.e164 }, { phone: NUMBERS.gb.e164 }, { phone: 'x' }] } });
    const tokens = tokenized.json().results.filter((r: { token?: string }) => r.token).map((r: { token: string }) => r.token);
    await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: writer, payload: { tokens } });
    await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: writer, payload: { tokens, redaction: 'masked' } });
    await t.app.inject({ method: 'POST', url: '/v1/lookup', headers: writer, payload: { phone: NUMBERS.us.e164 } });
    await t.app.inject({ method: 'GET', url: `/v1/tokens/${tokens[0]}`, headers: writer });
    await t.app.inject({ method: 'DELETE', url: `/v1/tokens/${tokens[1]}`, headers: writer });
    await t.app.inject({ method: 'POST', url: '/v1/erase', headers: writer, payload: { phone: NUMBERS.us.e164 } });
    await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: writer });
    await t.app.inject({ method: 'GET', url: '/v1/keys', headers: writer });
    const denied = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ sub: 'nosy', scope: 'tokenize' }), payload: { tokens } });
    expect(denied.statusCode).toBe(403);
    await t.app.flushRefusals();

    const recorded = await events();
    expect(recorded.map((e) => [e.client, e.action, e.items, e.outcome])).toEqual([
      // The tenant's first keys, made by the vault on its first write, with an event of their own.
      ['phonevault', 'keys_create', 0, 'ok'],
      ['crm', 'tokenize', 3, 'ok'],
      ['crm', 'detokenize', 2, 'ok'],
      ['crm', 'detokenize_masked', 2, 'ok'],
      ['crm', 'lookup', 1, 'ok'],
      ['crm', 'metadata', 1, 'ok'],
      ['crm', 'erase', 1, 'ok'],
      ['crm', 'erase_number', 1, 'ok'],
      ['crm', 'keys_rotate', 0, 'ok'],
      ['crm', 'keys_list', 2, 'ok'],
      // Refusals are counted per client, action, outcome and minute, not written one by one.
      ['nosy', 'detokenize', 1, 'denied'],
    ]);
    expect(recorded.map((e) => Number(e.seq))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(recorded.slice(1, 10).every((e) => /^[0-9a-f-]{36}$/.test(e.request_id ?? ''))).toBe(true);
    expect(recorded[1]!.purpose).toBe('support:INC-4711');
    expect(findLeaks(JSON.stringify(recorded))).toEqual([]);
  });

  it('serves GET /v1/audit to admin callers of the tenant only, paged and filtered', async () => {
    const admin = bearer({ sub: 'auditor', scope: 'admin' });
    const page = await t.app.inject({ method: 'GET', url: '/v1/audit?limit=4', headers: admin });
    expect(page.statusCode).toBe(200);
    expect(page.json().events.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(page.json().next).toBe(4);
    const next = await t.app.inject({ method: 'GET', url: '/v1/audit?limit=4&after=4', headers: admin });
    expect(next.json().events[0].seq).toBe(5);
    const filtered = await t.app.inject({ method: 'GET', url: '/v1/audit?action=detokenize&client=crm', headers: admin });
    expect(filtered.json().events.map((e: { action: string }) => e.action)).toEqual(['detokenize']);
    const future = await t.app.inject({ method: 'GET', url: `/v1/audit?from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`, headers: admin });
    expect(future.json().events).toEqual([]);
    expect((await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer({ tenant: 'globex', scope: 'admin' }) })).json().events).toEqual([]);
    expect((await t.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer({ scope: 'detokenize lookup' }) })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'GET', url: '/v1/audit?limit=5000', headers: admin })).statusCode).toBe(400);
  });

  it('is append-only: Postgres refuses updates, deletes and truncation', async () => {
    const before = (await events()).length;
    for (const sql of [`UPDATE audit_events SET outcome = 'ok' WHERE seq = 10`, 'DELETE FROM audit_events WHERE seq = 1', 'TRUNCATE audit_events']) {
      await expect(db.query(sql)).rejects.toMatchObject({ code: '42501' });
    }
    expect(await events()).toHaveLength(before);
  });

  it('audit verify passes an intact trail, and names an edited, a removed and a moved event', async () => {
    const intact = await run(['audit', 'verify']);
    expect(intact.code).toBe(0);
    expect(intact.out).toContain('ok     tenant acme:');

    const original = (await db.query<{ items: number }>(`SELECT items FROM audit_events WHERE tenant_id = 'acme' AND seq = 2`)).rows[0]!.items;
    await tamper(`UPDATE audit_events SET items = 0 WHERE tenant_id = 'acme' AND seq = 2`);
    let res = await run(['audit', 'verify', '--tenant', 'acme']);
    expect(res.code).toBe(1);
    expect(res.out).toContain('BROKEN tenant acme: event 2 was edited');
    await tamper(`UPDATE audit_events SET items = $1 WHERE tenant_id = 'acme' AND seq = 2`, [original]);
    expect((await run(['audit', 'verify', '--tenant', 'acme'])).code).toBe(0);

    await swapEvents5And6();
    res = await run(['audit', 'verify', '--tenant', 'acme']);
    expect(res.out).toContain('BROKEN tenant acme: event 5 is out of place');
    await swapEvents5And6();
    expect((await run(['audit', 'verify', '--tenant', 'acme'])).code).toBe(0);

    await tamper(`DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq = 7`);
    res = await run(['audit', 'verify']);
    expect(res.code).toBe(1);
    expect(res.out).toContain('BROKEN tenant acme: 1 event(s) removed after event 6');
    await tamper(`DELETE FROM audit_events WHERE tenant_id = 'acme' AND seq > 10`);
    res = await run(['audit', 'verify']);
    expect(res.out).toContain('BROKEN tenant acme: 1 event(s) removed after event 6');
  });

  it('audit prune drops whole old months and the chain still verifies from its anchor', async () => {
    await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant: 'initech', scope: 'tokenize' }), payload: { phone: NUMBERS.de.e164 } });
    await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant: 'initech', scope: 'tokenize' }), payload: { phone: NUMBERS.de.e164 } });
    // The first two events are backdated by a year, as a superuser could; the hash covers the time, so they are re-chained here.
    await tamper(`UPDATE audit_events SET occurred_at = now() - interval '1 year' WHERE tenant_id = 'initech' AND seq <= 2`);
    const refused = await run(['audit', 'prune', '--before', 'last-month']);
    expect(refused.code).toBe(2);
    const month = new Date(Date.now() - 31 * 24 * 3600 * 1000).toISOString().slice(0, 7);
    const res = await run(['audit', 'prune', '--before', month]);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/audit prune: dropped 2 event\(s\)/);
    // Event 1 records the tenant's first keys; event 2, backdated, is dropped with it.
    const left = await events('initech');
    expect(left.map((e) => Number(e.seq))).toEqual([3]);
    // Event 3 chains from the (edited) event 2, whose hash the anchor now holds: the kept chain verifies.
    expect((await run(['audit', 'verify', '--tenant', 'initech'])).out).toContain('ok     tenant initech: 1 event(s), chain intact');
  });

  it('keeps one chain per tenant while two instances answer reads that carry their events', async () => {
    // Two vaults on one database: each read commits its event in the read's own transaction, chained from
    // whatever the other instance appended last.
    const other = await database.app();
    try {
      const headers = bearer({ sub: 'pair', tenant: 'umbrella', scope: 'tokenize detokenize' });
      const tokens = (await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers, payload: { items: [{ phone: NUMBERS.us.e164 }, { phone: NUMBERS.de.e164 }] } }))
        .json()
        .results.map((r: { token: string }) => r.token);
      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? t : other).app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [tokens[i % 2]] } })),
      );
      expect(answers.map((res) => res.json().results[0].phone)).toEqual(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? NUMBERS.us.e164 : NUMBERS.de.e164)));

      const recorded = await events('umbrella');
      // The tenant's first keys, the batch, then the forty reads.
      expect(recorded.map((e) => Number(e.seq))).toEqual(Array.from({ length: 42 }, (_, i) => i + 1));
      expect(recorded.filter((e) => e.action === 'detokenize' && e.outcome === 'ok' && e.items === 1)).toHaveLength(40);
      expect(new Set(recorded.slice(1).map((e) => e.request_id)).size).toBe(41); // each answer once, none twice
      expect((await run(['audit', 'verify', '--tenant', 'umbrella'])).code).toBe(0);
    } finally {
      await other.close();
    }
  });

  it('answers 503, and returns nothing, when the audit event cannot be written', async () => {
    const headers = bearer({ tenant: 'acme', scope: 'tokenize detokenize' });
    const token = (await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: NUMBERS.fr.e164 } })).json().token;
    await db.query('ALTER TABLE audit_heads RENAME TO audit_heads_away');
    try {
      const res = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [token] } });
      expect(res.statusCode).toBe(503);
      expect(res.json().code).toBe('unavailable');
      expect(res.body).not.toContain(NUMBERS.fr.digits);
    } finally {
      await db.query('ALTER TABLE audit_heads_away RENAME TO audit_heads');
    }
  });

  it('records maintenance commands under the client cli', async () => {
    await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: bearer({ tenant: 'initech', scope: 'admin' }) });
    expect((await run(['rewrap', '--tenant', 'initech'])).code).toBe(0);
    const recorded = await events('initech');
    expect(recorded.at(-1)).toMatchObject({ client: 'cli', action: 'rewrap', items: 2, outcome: 'ok' });
  });
});
