import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/audit/chain.js';
import { auditAppendCtes, createAuditRepository, type AuditRepository } from '../../src/store/audit-repository.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let testDb: TestDb;
let audit: AuditRepository;
beforeAll(async () => {
  testDb = await createTestDb();
  audit = createAuditRepository(testDb.db);
});
afterAll(async () => {
  await testDb.drop();
});

const event = (tenant: string, n: number) => ({ tenant, client: 'c', action: 'detokenize', items: n, outcome: 'ok', requestId: `r-${tenant}-${n}`, purpose: null, occurredAt: new Date() });
const appendIn = (params: unknown[]) => testDb.db.query<{ moved: string[] }>(`WITH ${auditAppendCtes(1)} SELECT moved FROM appended`, params).then((r) => ({ moved: r.rows[0]!.moved, value: undefined }));

describe('chain appends', () => {
  it("wait for an append in flight to the same tenant's chain, never for another tenant's", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const order: string[] = [];
    const first = audit.appendWith([event('alpha', 1)], async (params) => {
      await held; // alpha's append is in flight until released
      order.push('alpha 1');
      return appendIn(params);
    });
    const second = audit.appendWith([event('alpha', 2)], async (params) => {
      order.push('alpha 2');
      return appendIn(params);
    });
    const other = audit.appendWith([event('beta', 1)], async (params) => {
      order.push('beta 1');
      return appendIn(params);
    });
    expect(await other).toEqual({ value: undefined, appended: true }); // done while alpha is held
    expect(order).toEqual(['beta 1']);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['beta 1', 'alpha 1', 'alpha 2']);

    for (const tenant of ['alpha', 'beta']) {
      const head = (await audit.head(tenant))!;
      const events = await audit.chainPage(tenant, 0, 100);
      expect(verifyChain(events, { seq: head.anchorSeq, hash: head.anchorHash }, head)).toBeNull();
      expect(events.map((e) => e.items)).toEqual(tenant === 'alpha' ? [1, 2] : [1]);
    }
  });

  it('lets the next append of a tenant go when one fails, and chains it from what was committed', async () => {
    const failed = audit.appendWith([event('gamma', 1)], async () => {
      throw new Error('statement failed');
    });
    const next = audit.appendWith([event('gamma', 2)], async (params) => appendIn(params));
    await expect(failed).rejects.toThrow('statement failed');
    expect(await next).toEqual({ value: undefined, appended: true });
    const head = (await audit.head('gamma'))!;
    const events = await audit.chainPage('gamma', 0, 100);
    expect(events.map((e) => [e.seq, e.items])).toEqual([[1, 2]]);
    expect(verifyChain(events, { seq: head.anchorSeq, hash: head.anchorHash }, head)).toBeNull();
  });

  it('starts a new chain once when two instances append its first events at the same moment', async () => {
    const instances = [createAuditRepository(testDb.db), createAuditRepository(testDb.db)];
    for (let round = 0; round < 5; round++) {
      const tenant = `fresh-${round}`;
      // Each instance believes the chain empty; one of the two first appends meets the other's seq 1.
      await Promise.all(instances.map((instance, i) => instance.append([event(tenant, 2 * i + 1), event(tenant, 2 * i + 2)])));
      const head = (await audit.head(tenant))!;
      const events = await audit.chainPage(tenant, 0, 100);
      expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      expect(events.map((e) => e.items).sort()).toEqual([1, 2, 3, 4]);
      expect(verifyChain(events, { seq: head.anchorSeq, hash: head.anchorHash }, head)).toBeNull();
    }
  });
});
