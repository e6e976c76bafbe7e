import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envKekSet } from '../../src/crypto/master-keys.js';
import { openVault } from '../../src/vault/deps.js';
import { sweep } from '../../src/vault/maintenance.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { findLeaks, NUMBERS } from '../helpers/numbers.js';

// Issue 15, item 6: a retried write is made once.
let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const writer = (sub = 'crm', tenant = 'idem') => bearer({ tenant, sub, scope: 'tokenize detokenize erase lookup' });
const post = (url: string, payload: object, key?: string, headers = writer()) =>
  t.app.inject({ method: 'POST', url, headers: { ...headers, ...(key === undefined ? {} : { 'idempotency-key': key }) }, payload });
const count = async (sql: string, values: unknown[] = []) => Number((await t.testDb.owner.query<{ n: string }>(sql, values)).rows[0]!.n);
const tokensOf = (tenant = 'idem') => count('SELECT count(*) AS n FROM tokens WHERE tenant_id = $1', [tenant]);

describe('Idempotency-Key', () => {
  it('gives a retried tokenize its first answer, stores nothing more and records the replay', async () => {
    const before = await tokensOf();
    const first = await post('/v1/tokenize', { phone: NUMBERS.us.e164 }, 'order-1001');
    expect(first.statusCode).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    // The same request, its fields in another order: the same request.
    const again = await post('/v1/tokenize', { deterministic: false, phone: NUMBERS.us.e164 }, 'order-1001');
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json()).toEqual(first.json());
    expect(await tokensOf()).toBe(before + 1);
    const events = await t.testDb.owner.query<{ action: string; outcome: string; request_id: string }>(
      `SELECT action, outcome, request_id FROM audit_events WHERE tenant_id = 'idem' AND action = 'tokenize' ORDER BY seq DESC LIMIT 2`,
    );
    expect(events.rows.map((row) => [row.action, row.outcome])).toEqual([
      ['tokenize', 'replayed'],
      ['tokenize', 'ok'],
    ]);
    expect(events.rows[0]!.request_id).toBe(again.headers['x-request-id']);
  });

  it('refuses the same key with another request (422), on another operation too, and scopes keys to the client', async () => {
    await post('/v1/tokenize', { phone: NUMBERS.gb.e164 }, 'order-2002');
    for (const [url, payload] of [
      ['/v1/tokenize', { phone: NUMBERS.de.e164 }],
      ['/v1/tokenize', { phone: NUMBERS.gb.e164, ttlSeconds: 60 }],
      ['/v1/tokenize/batch', { items: [{ phone: NUMBERS.gb.e164 }] }],
      ['/v1/erase', { phone: NUMBERS.gb.e164 }],
    ] as const) {
      const res = await post(url, payload, 'order-2002');
      expect(res.statusCode, url).toBe(422);
      expect(res.json().code).toBe('idempotency_key_reused');
      expect(res.body).not.toContain('order-2002');
    }
    // Another client's key of the same text is its own; so is another tenant's.
    const other = await post('/v1/tokenize', { phone: NUMBERS.gb.e164 }, 'order-2002', writer('billing'));
    expect(other.statusCode).toBe(201);
    expect(other.headers['idempotent-replayed']).toBeUndefined();
    const elsewhere = await post('/v1/tokenize', { phone: NUMBERS.gb.e164 }, 'order-2002', writer('crm', 'idem-other'));
    expect(elsewhere.headers['idempotent-replayed']).toBeUndefined();
  });

  it('makes concurrent retries of one request a single write: one stores, the rest wait (409) or replay', async () => {
    const before = await tokensOf();
    const answers = await Promise.all(Array.from({ length: 12 }, () => post('/v1/tokenize/batch', { items: [{ phone: NUMBERS.fr.e164 }, { phone: NUMBERS.de.e164 }] }, 'burst-1')));
    const statuses = answers.map((res) => res.statusCode);
    expect(statuses.every((status) => status === 200 || status === 409)).toBe(true);
    const fresh = answers.filter((res) => res.statusCode === 200 && !res.headers['idempotent-replayed']);
    expect(fresh).toHaveLength(1);
    for (const res of answers.filter((r) => r.statusCode === 200)) expect(res.json()).toEqual(fresh[0]!.json());
    for (const res of answers.filter((r) => r.statusCode === 409)) {
      expect(res.json().code).toBe('idempotency_in_flight');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    expect(await tokensOf()).toBe(before + 2);
  });

  it('gives the key up when the request fails, so that a retry runs afresh', async () => {
    const invalid = await post('/v1/tokenize', { phone: 'not a number' }, 'retry-3003');
    expect(invalid.statusCode).toBe(400);
    // Nothing was stored, so nothing is replayed: the same request fails again, another one takes the key.
    expect((await post('/v1/tokenize', { phone: 'not a number' }, 'retry-3003')).statusCode).toBe(400);
    const fixed = await post('/v1/tokenize', { phone: NUMBERS.us.e164 }, 'retry-3003');
    expect(fixed.statusCode).toBe(201);
    expect(fixed.headers['idempotent-replayed']).toBeUndefined();
  });

  it('replays an erasure without erasing what was stored since', async () => {
    const headers = writer('eraser', 'idem-erase');
    await post('/v1/tokenize', { phone: NUMBERS.de.e164 }, undefined, headers);
    const first = await post('/v1/erase', { phone: NUMBERS.de.e164 }, 'erase-4004', headers);
    expect(first.json()).toEqual({ erased: 1 });
    const later = (await post('/v1/tokenize', { phone: NUMBERS.de.e164 }, undefined, headers)).json().token;
    const again = await post('/v1/erase', { phone: NUMBERS.de.e164 }, 'erase-4004', headers);
    expect(again.json()).toEqual({ erased: 1 });
    expect(again.headers['idempotent-replayed']).toBe('true');
    const read = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [later] } });
    expect(read.json().results[0].phone).toBe(NUMBERS.de.e164);
  });

  it('stores neither the key nor the request, only keyed hashes and the first answer, which holds no number', async () => {
    await post('/v1/tokenize', { phone: NUMBERS.gb.e164 }, `ref-${NUMBERS.gb.digits}`);
    const rows = await t.testDb.owner.query(`SELECT tenant_id, key_hash, body_hash, state, status, answer FROM idempotency_keys`);
    const text = JSON.stringify(rows.rows);
    for (const row of rows.rows as Array<{ key_hash: Buffer; body_hash: Buffer }>) {
      expect(row.key_hash).toHaveLength(32);
      expect(row.body_hash).toHaveLength(32);
    }
    expect(text).not.toContain('order-1001');
    expect(text).not.toContain(`ref-${NUMBERS.gb.digits}`);
    expect(findLeaks(text)).toEqual([]);
  });

  it('refuses a key that is not 1-255 printable ASCII characters', async () => {
    for (const key of ['', 'has space', 'x'.repeat(256), 'clé', 'tab\there']) {
      const res = await post('/v1/tokenize', { phone: NUMBERS.us.e164 }, key);
      expect(res.statusCode, JSON.stringify(key)).toBe(400);
      expect(res.json().code).toBe('invalid_request');
    }
    expect((await post('/v1/tokenize', { phone: NUMBERS.us.e164 }, 'x'.repeat(255))).statusCode).toBe(201);
  });

  it('lets a claim abandoned by a request that never finished be taken over, and sweeps expired keys', async () => {
    const first = await post('/v1/tokenize', { phone: NUMBERS.us.e164 }, 'crash-5005');
    // As if the request had been claimed and the process had died before finishing it.
    await t.testDb.owner.query(`UPDATE idempotency_keys SET state = 'in_flight', claimed_at = now() - interval '2 minutes' WHERE tenant_id = 'idem' AND status = 201 AND answer->>'token' = $1`, [first.json().token]);
    const taken = await post('/v1/tokenize', { phone: NUMBERS.us.e164 }, 'crash-5005');
    expect(taken.statusCode).toBe(201);
    expect(taken.headers['idempotent-replayed']).toBeUndefined();

    await t.testDb.owner.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = 'idem'`);
    const deps = await openVault({ db: t.testDb.db, keks: envKekSet(t.config.kek.masterKeys), keyMaxEncryptions: 2 ** 31, logger: pino({ level: 'silent' }) });
    const swept = await sweep(deps);
    expect(swept.idempotencyKeys).toBeGreaterThanOrEqual(5);
    expect(await count(`SELECT count(*) AS n FROM idempotency_keys WHERE tenant_id = 'idem'`)).toBe(0);
  });

  it("keeps answering when many of one tenant's keyed writes come at once, and leaves other tenants' calls alone", async () => {
    // Each keyed write is a transaction that ends on the tenant's audit head lock: queued in Postgres they held
    // the pool until statements timed out, and the breaker then answered 503 to everyone.
    const crowd = Array.from({ length: 120 }, (_, i) => post('/v1/tokenize', { phone: NUMBERS.us.e164 }, `crowd-${i}`, writer('crowd', 'idem-crowd')));
    const bystander = t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: writer('other', 'idem-other'), payload: { phone: NUMBERS.gb.e164 } });
    const answers = await Promise.all(crowd);
    expect(answers.map((res) => res.statusCode)).toEqual(answers.map(() => 201));
    expect((await bystander).statusCode).toBe(201);
    expect(await tokensOf('idem-crowd')).toBe(120);
  });
});
