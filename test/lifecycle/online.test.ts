import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envKekSet, parseMasterKeys } from '../../src/crypto/master-keys.js';
import { openVault } from '../../src/vault/deps.js';
import { rewrap } from '../../src/vault/maintenance.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

const masterKeys = parseMasterKeys(randomBytes(32).toString('base64'));
let testDb: TestDb;
beforeAll(async () => {
  testDb = await createTestDb({ max: 20 });
});
afterAll(async () => {
  await testDb.drop();
});

const phone = (i: number) => `+1201555${String(3000 + (i % 5000)).padStart(4, '0')}`;

describe('lifecycle under load', () => {
  // The promise of online rotation: traffic never notices, and nothing is lost.
  it('serves tokenize and detokenize continuously through a rotation and a full re-wrap, with zero failures', async () => {
    const t = await build({ masterKeys }, testDb);
    const headers = bearer({ tenant: 'busy', scope: 'tokenize detokenize admin' });
    const issued = new Map<string, string>();
    for (let i = 0; i < 300; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers, payload: { items: [{ phone: phone(i) }] } });
      issued.set(res.json().results[0].token, phone(i));
      if (i === 299) break;
    }
    let running = true;
    const failures: string[] = [];
    let requests = 0;
    const worker = async (w: number) => {
      for (let i = w * 1000; running; i++) {
        const tokenized = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: phone(i) } });
        requests++;
        if (tokenized.statusCode !== 201) {
          failures.push(`tokenize ${tokenized.statusCode}`);
          continue;
        }
        issued.set(tokenized.json().token, phone(i));
        const sample = [...issued.keys()].slice(-20);
        const detokenized = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: sample } });
        requests++;
        if (detokenized.statusCode !== 200) failures.push(`detokenize ${detokenized.statusCode}`);
        for (const result of detokenized.json().results ?? []) {
          if (result.phone !== issued.get(result.token)) failures.push(`wrong or missing number for a token`);
        }
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers })).statusCode).toBe(200);
    const deps = await openVault({ db: testDb.db, keks: envKekSet(masterKeys), keyMaxEncryptions: 2 ** 31, logger: pino({ level: 'silent' }) });
    const report = await rewrap(deps, { tenant: 'busy', batchSize: 50 });
    // Load on both sides of the rotation and the re-wrap, however fast the database answers (a Citus cluster's
    // requests take longer).
    await new Promise((resolve) => setTimeout(resolve, 200));
    while (requests <= 50) await new Promise((resolve) => setTimeout(resolve, 50));
    running = false;
    await Promise.all(workers);

    expect(failures).toEqual([]);
    expect(report.moved).toBeGreaterThanOrEqual(300);
    expect(report.unreadable).toBe(0);
    // Every token ever issued still gives back its own number.
    const tokens = [...issued.keys()];
    for (let start = 0; start < tokens.length; start += 1000) {
      const chunk = tokens.slice(start, start + 1000);
      const res = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: chunk } });
      for (const result of res.json().results) expect(result.phone).toBe(issued.get(result.token));
    }
    await t.close();
  });

  // Random-IV GCM is safe for 2^32 encryptions per key; the budget is enforced, here at a tiny size.
  it('rotates by itself when a data key has spent its encryption budget', async () => {
    const t = await build({ masterKeys, keyMaxEncryptions: 20 }, testDb);
    const headers = bearer({ tenant: 'budget', scope: 'tokenize detokenize' });
    const tokens: string[] = [];
    for (let i = 0; i < 60; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: phone(i) } });
      expect(res.statusCode).toBe(201);
      tokens.push(res.json().token);
    }
    const batch = await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers, payload: { items: Array.from({ length: 15 }, (_, i) => ({ phone: phone(100 + i) })) } });
    expect(batch.statusCode).toBe(200);
    const versions = await testDb.db.query<{ version: number; encryptions: string; state: string }>(
      `SELECT version, encryptions, state FROM data_keys WHERE tenant_id = 'budget' ORDER BY version`,
    );
    expect(versions.rows.length).toBeGreaterThanOrEqual(4);
    expect(versions.rows.every((row) => Number(row.encryptions) <= 20)).toBe(true);
    expect(versions.rows.filter((row) => row.state === 'active')).toHaveLength(1);
    const res = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens } });
    expect(res.json().results.map((r: { phone: string }) => r.phone)).toEqual(tokens.map((_, i) => phone(i)));
    await t.close();
  });

  it('gives 100 concurrent requests for one new number exactly one deterministic token', async () => {
    const t = await build({ masterKeys }, testDb);
    const headers = bearer({ tenant: 'race', scope: 'tokenize' });
    const spellings = ['+1 201 555 0177', '(201) 555-0177', '201.555.0177', '+12015550177'];
    const responses = await Promise.all(
      Array.from({ length: 100 }, (_, i) => t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone: spellings[i % 4], country: 'US', deterministic: true } })),
    );
    expect(responses.map((r) => r.statusCode).every((status) => status === 201)).toBe(true);
    expect(new Set(responses.map((r) => r.json().token)).size).toBe(1);
    const rows = await testDb.db.query(`SELECT 1 FROM tokens WHERE tenant_id = 'race'`);
    expect(rows.rowCount).toBe(1);
    await t.close();
  });
});
