import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain, type AuditEvent } from '../../src/audit/chain.js';
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

const event = (tenant: string, n: number, fields: Partial<AuditEvent> = {}): AuditEvent => ({
  tenant,
  client: 'c',
  action: 'detokenize',
  items: n,
  outcome: 'ok',
  requestId: `r-${tenant}-${n}`,
  purpose: null,
  occurredAt: new Date(),
  ...fields,
});

async function chainOf(tenant: string) {
  const head = (await audit.head(tenant))!;
  const events = await audit.chainPage(tenant, 0, 1_000);
  return { head, events, problem: verifyChain(events, { seq: head.anchorSeq, hash: head.anchorHash }, head) };
}

describe('chain appends', () => {
  it('hash in the database exactly as the vault verifies: any text, absent fields, several tenants in one statement', async () => {
    await audit.append([
      event('δ-tenant', 1, { client: 'svc-ü客', purpose: 'support ticket 42 — “quoted”', requestId: null }),
      event('epsilon', 1, { purpose: '', requestId: '' }),
      event('δ-tenant', 2, { action: 'lookup', outcome: 'not_found', items: 0 }),
      event('epsilon', 2, { client: 'x'.repeat(300), occurredAt: new Date(0) }),
    ]);
    for (const tenant of ['δ-tenant', 'epsilon']) {
      const { head, events, problem } = await chainOf(tenant);
      expect(problem).toBeNull();
      expect(events.map((e) => e.seq)).toEqual([1, 2]);
      expect(head.seq).toBe(2);
      expect(head.hash).toEqual(events[1]!.hash);
    }
  });

  it('build one chain when two instances append to one tenant at once, each event once and in a single order', async () => {
    const instances = [createAuditRepository(testDb.db), createAuditRepository(testDb.db)];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => instances[i % 2]!.append(i % 5 === 0 ? [event('alpha', i), event('beta', i)] : [event('alpha', i)])),
    );
    const alpha = await chainOf('alpha');
    expect(alpha.problem).toBeNull();
    expect(alpha.events.map((e) => e.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(alpha.events.map((e) => e.items).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    const beta = await chainOf('beta');
    expect(beta.problem).toBeNull();
    expect(beta.events).toHaveLength(8);
  });

  it('starts a new chain once when two instances append its first events at the same moment', async () => {
    const instances = [createAuditRepository(testDb.db), createAuditRepository(testDb.db)];
    for (let round = 0; round < 5; round++) {
      const tenant = `fresh-${round}`;
      await Promise.all(instances.map((instance, i) => instance.append([event(tenant, 2 * i + 1), event(tenant, 2 * i + 2)])));
      const { events, problem } = await chainOf(tenant);
      expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      expect(events.map((e) => e.items).sort()).toEqual([1, 2, 3, 4]);
      expect(problem).toBeNull();
    }
  });

  it("leaves the chain as it was when the statement carrying events fails, and chains the next from what was committed", async () => {
    await audit.append([event('gamma', 1)]);
    const before = await chainOf('gamma');
    // The events ride in a statement whose own work fails after they were appended: all of it rolls back.
    const failing = audit.appendWith([event('gamma', 2)], (params) =>
      testDb.db.query(`WITH RECURSIVE ${auditAppendCtes(1)} SELECT 1 / (SELECT count(*) - count(*) FROM audit_new)::int`, params),
    );
    await expect(failing).rejects.toThrow();
    expect((await chainOf('gamma')).head).toEqual(before.head);
    await audit.appendWith([event('gamma', 3)], (params) => testDb.db.query(`WITH RECURSIVE ${auditAppendCtes(1)} SELECT 1`, params));
    const after = await chainOf('gamma');
    expect(after.events.map((e) => [e.seq, e.items])).toEqual([
      [1, 1],
      [2, 3],
    ]);
    expect(after.problem).toBeNull();
  });

  it('fails whole rather than leave events out when a head row has gone, then resumes the chain where it ends', async () => {
    await audit.append([event('zeta', 1)]);
    // An operator deletes the head behind the vault's back: the repository still believes it seeded.
    await testDb.db.query(`DELETE FROM audit_heads WHERE tenant_id = 'zeta'`);
    await expect(audit.append([event('zeta', 2), event('eta', 1)])).rejects.toThrow();
    expect(await audit.chainPage('eta', 0, 10)).toEqual([]); // nothing of the failed statement stayed
    expect(await audit.chainPage('zeta', 0, 10)).toHaveLength(1);
    await audit.append([event('zeta', 3)]);
    const zeta = await chainOf('zeta');
    expect(zeta.events.map((e) => [e.seq, e.items])).toEqual([
      [1, 1],
      [2, 3],
    ]);
    expect(zeta.problem).toBeNull();
  });
});
