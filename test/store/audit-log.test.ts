import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain, type AuditEvent } from '../../src/audit/chain.js';
import { auditedStatement, createAuditLog, type AuditLog } from '../../src/store/audit-log.js';
import { createAuditReads, type AuditReads } from '../../src/store/audit-reads.js';
import type { Queryable } from '../../src/store/db.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

const key = Buffer.alloc(32, 5);
let testDb: TestDb;
let audit: AuditLog;
let reads: AuditReads;
beforeAll(async () => {
  testDb = await createTestDb();
  audit = createAuditLog(testDb.db, { key });
  reads = createAuditReads(testDb.db);
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

const append = (log: AuditLog, tenant: string, events: AuditEvent[]) => log.commit(tenant, async () => ({ value: null, events }));

async function chainOf(tenant: string) {
  const head = (await reads.head(tenant))!;
  const events = await reads.chainPage(tenant, 0, 10_000);
  return { head, events, problem: verifyChain({ key, keyedAfter: head.keyedAfter }, events, { seq: head.anchorSeq, hash: head.anchorHash }, head) };
}

const tokensOf = async (tenant: string) => Number((await testDb.owner.query<{ n: string }>('SELECT count(*) AS n FROM tokens WHERE tenant_id = $1', [tenant])).rows[0]!.n);
const insertToken = (tx: Queryable, tenant: string) =>
  tx.query(
    `INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, line_type)
     VALUES ($1, decode(md5(random()::text), 'hex'), 1, '\\x00', sha256(random()::text::bytea), false, 'mobile')`,
    [tenant],
  );

describe('the audit log', () => {
  it('keeps any text exactly and chains it under the key', async () => {
    await append(audit, 'δ-tenant', [
      event('δ-tenant', 1, { client: 'svc-ü客', purpose: 'support:INC-42', requestId: null }),
      event('δ-tenant', 2, { action: 'lookup', outcome: 'not_found', items: 0, occurredAt: new Date(0) }),
    ]);
    const { head, events, problem } = await chainOf('δ-tenant');
    expect(problem).toBeNull();
    expect(events.map((e) => [e.seq, e.client, e.purpose, e.requestId])).toEqual([
      [1, 'svc-ü客', 'support:INC-42', null],
      [2, 'c', null, 'r-δ-tenant-2'],
    ]);
    expect(events[1]!.occurredAt.getTime()).toBe(0);
    expect(head.seq).toBe(2);
    expect(head.hash).toEqual(events[1]!.hash);
  });

  it('commits the work with its events, or neither', async () => {
    await expect(
      audit.commit('gamma', async (tx) => {
        await insertToken(tx, 'gamma');
        await tx.query('SELECT 1 / 0');
        return { value: null, events: [event('gamma', 1)] };
      }),
    ).rejects.toThrow();
    expect(await tokensOf('gamma')).toBe(0);
    expect(await reads.chainPage('gamma', 0, 10)).toEqual([]);
    // The events fail instead: the work goes too.
    await testDb.owner.query(`CREATE OR REPLACE FUNCTION refuse_gamma() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      IF NEW.tenant_id = 'gamma' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$`);
    await testDb.owner.query('CREATE TRIGGER refuse_gamma BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_gamma()');
    try {
      await expect(audit.commit('gamma', async (tx) => ({ value: await insertToken(tx, 'gamma'), events: [event('gamma', 2)] }))).rejects.toThrow();
    } finally {
      await testDb.owner.query('DROP TRIGGER refuse_gamma ON audit_events');
    }
    expect(await tokensOf('gamma')).toBe(0);
    await audit.commit('gamma', async (tx) => ({ value: await insertToken(tx, 'gamma'), events: [event('gamma', 3)] }));
    expect(await tokensOf('gamma')).toBe(1);
    const after = await chainOf('gamma');
    expect(after.events.map((e) => e.items)).toEqual([3]);
    expect(after.problem).toBeNull();
  });

  it('builds one chain when two instances append to one tenant at once, each event once and in a single order', async () => {
    const instances = [createAuditLog(testDb.db, { key }), createAuditLog(testDb.db, { key })];
    await Promise.all(Array.from({ length: 40 }, (_, i) => append(instances[i % 2]!, 'alpha', [event('alpha', i)])));
    const alpha = await chainOf('alpha');
    expect(alpha.problem).toBeNull();
    expect(alpha.events.map((e) => e.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(alpha.events.map((e) => e.items).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });

  it('starts a new chain once when two instances append its first events at the same moment', async () => {
    for (let round = 0; round < 5; round++) {
      const instances = [createAuditLog(testDb.db, { key }), createAuditLog(testDb.db, { key })];
      const tenant = `fresh-${round}`;
      await Promise.all(instances.map((instance, i) => append(instance, tenant, [event(tenant, 2 * i + 1), event(tenant, 2 * i + 2)])));
      const { events, problem } = await chainOf(tenant);
      expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
      expect(problem).toBeNull();
    }
  });

  it('fails whole rather than leave events out when a head row has gone, then resumes the chain where it ends', async () => {
    await append(audit, 'zeta', [event('zeta', 1)]);
    // An operator deletes the head behind the vault's back: the log still believes it seeded.
    await testDb.owner.query(`DELETE FROM audit_heads WHERE tenant_id = 'zeta'`);
    await expect(audit.commit('zeta', async (tx) => ({ value: await insertToken(tx, 'zeta'), events: [event('zeta', 2)] }))).rejects.toThrow();
    expect(await tokensOf('zeta')).toBe(0);
    await append(audit, 'zeta', [event('zeta', 3)]);
    const zeta = await chainOf('zeta');
    expect(zeta.events.map((e) => [e.seq, e.items])).toEqual([
      [1, 1],
      [2, 3],
    ]);
    expect(zeta.problem).toBeNull();
  });

  it('tells of every head it commits, for the checkpoints', async () => {
    const heads: Array<[string, number, number]> = [];
    const told = createAuditLog(testDb.db, { key, onAdvance: (tenant, head, appended) => heads.push([tenant, head.seq, appended]) });
    await append(told, 'eta', [event('eta', 1), event('eta', 2)]);
    await append(told, 'eta', []);
    await append(told, 'eta', [event('eta', 3)]);
    expect(heads).toEqual([
      ['eta', 2, 2],
      ['eta', 3, 1],
    ]);
  });
});

// On a distributed database the append goes as statements of its own beside the work's, in one transaction
// (src/store/audit-append.ts); the same promises hold, here on plain Postgres and in the Citus run alike.
describe('the audit log with the append beside the work (distributed)', () => {
  const split = () => createAuditLog(testDb.db, { key, distributed: true });
  const INSERT = auditedStatement<'tenant', { token_id: Buffer }>(
    'pv_test_insert',
    `inserted AS (INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, line_type)
      VALUES (:tenant, decode(md5(random()::text), 'hex'), 1, '\\x00', sha256(random()::text::bytea), false, 'mobile') RETURNING token_id)`,
    'SELECT token_id FROM inserted',
  );

  it('commits each statement with its events, and two instances on one tenant build one chain', async () => {
    // Each instance one statement at a time, as its batcher sends a tenant's flushes; the two at once.
    const results = await Promise.all(
      [split(), split()].map(async (log, k) => {
        const rows: number[] = [];
        for (let i = k; i < 30; i += 2) rows.push((await log.execute('split-a', [event('split-a', i)], INSERT, { tenant: 'split-a' })).rows.length);
        return rows;
      }),
    );
    expect(results.flat()).toEqual(Array.from({ length: 30 }, () => 1));
    expect(await tokensOf('split-a')).toBe(30);
    const chain = await chainOf('split-a');
    expect(chain.problem).toBeNull();
    expect(chain.events.map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(chain.events.map((e) => e.items).sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it('stores neither the work nor its events when the events cannot be written, and resumes once they can', async () => {
    const log = split();
    await log.execute('split-b', [event('split-b', 1)], INSERT, { tenant: 'split-b' });
    await testDb.owner.query(`CREATE OR REPLACE FUNCTION refuse_split() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      IF NEW.tenant_id = 'split-b' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$`);
    await testDb.owner.query('CREATE TRIGGER refuse_split BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_split()');
    try {
      await expect(log.execute('split-b', [event('split-b', 2)], INSERT, { tenant: 'split-b' })).rejects.toThrow();
      await expect(log.commit('split-b', async (tx) => ({ value: await insertToken(tx, 'split-b'), events: [event('split-b', 3)] }))).rejects.toThrow();
    } finally {
      await testDb.owner.query('DROP TRIGGER refuse_split ON audit_events');
    }
    expect(await tokensOf('split-b')).toBe(1);
    await log.execute('split-b', [event('split-b', 4)], INSERT, { tenant: 'split-b' });
    await log.commit('split-b', async (tx) => ({ value: await insertToken(tx, 'split-b'), events: [event('split-b', 5)] }));
    expect(await tokensOf('split-b')).toBe(3);
    const chain = await chainOf('split-b');
    expect(chain.events.map((e) => e.items)).toEqual([1, 4, 5]);
    expect(chain.problem).toBeNull();
  });

  it('appends more events than one VALUES statement takes (1,000), in several', async () => {
    const many = Array.from({ length: 7_300 }, (_, i) => event('split-many', i));
    await split().commit('split-many', async () => ({ value: null, events: many }));
    const chain = await chainOf('split-many');
    expect(chain.problem).toBeNull();
    expect(chain.head.seq).toBe(7_300);
  });

  it('commits none of the events, nor the work, when a later statement of a long append fails', async () => {
    const log = split();
    await testDb.owner.query(`CREATE OR REPLACE FUNCTION refuse_late() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      IF NEW.tenant_id = 'split-late' AND NEW.seq > 1200 THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$`);
    await testDb.owner.query('CREATE TRIGGER refuse_late BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_late()');
    try {
      const many = Array.from({ length: 1_500 }, (_, i) => event('split-late', i));
      await expect(log.commit('split-late', async (tx) => ({ value: await insertToken(tx, 'split-late'), events: many }))).rejects.toThrow();
    } finally {
      await testDb.owner.query('DROP TRIGGER refuse_late ON audit_events');
    }
    expect(await tokensOf('split-late')).toBe(0);
    expect(await reads.chainPage('split-late', 0, 10)).toEqual([]);
    expect((await reads.head('split-late'))?.seq ?? 0).toBe(0);
  });

  it('follows a head another instance moved, and fails whole when the head row has gone', async () => {
    const [one, other] = [split(), split()];
    await one.execute('split-c', [event('split-c', 1)], INSERT, { tenant: 'split-c' });
    await other.execute('split-c', [event('split-c', 2)], INSERT, { tenant: 'split-c' });
    // `one` still knows the head at 1: its statement meets the moved head, rolls back and runs again from the lock.
    await one.execute('split-c', [event('split-c', 3)], INSERT, { tenant: 'split-c' });
    expect((await chainOf('split-c')).events.map((e) => e.items)).toEqual([1, 2, 3]);
    await testDb.owner.query(`DELETE FROM audit_heads WHERE tenant_id = 'split-c'`);
    await expect(one.execute('split-c', [event('split-c', 4)], INSERT, { tenant: 'split-c' })).rejects.toThrow();
    expect(await tokensOf('split-c')).toBe(3);
  });
});

describe('commits of one tenant in one process', () => {
  it('run one at a time, yet never wait for ever on a commit that waits on them', async () => {
    const tenant = 'turns';
    let started!: () => void;
    const outerStarted = new Promise<void>((resolve) => (started = resolve));
    // Queued behind the outer commit by a path of its own (as a rotation holding the keyring's lock would be),
    // while the outer commit's work waits for it.
    const inner = (async () => {
      await outerStarted;
      return audit.commit(tenant, async () => ({ value: 'inner', events: [event(tenant, 1)] }));
    })();
    const outer = audit.commit(tenant, async () => {
      started();
      return { value: await inner, events: [event(tenant, 2)] };
    });
    const settled = await Promise.race([outer.then(() => 'settled', () => 'settled'), new Promise((resolve) => setTimeout(() => resolve('stuck'), 10_000))]);
    expect(settled).toBe('settled');
    await inner.catch(() => undefined);
    // Whatever failed failed whole: once a statement timeout's breaker has closed, the chain is intact.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await chainOf(tenant)).problem).toBeNull();
  });

  it("let a commit made inside another's work skip the queue, as the keyring's do", async () => {
    const tenant = 'nested';
    await audit.commit(tenant, async () => ({ value: null, events: [event(tenant, 1)] }));
    // Made once, as the keyring makes a key once: the outer work runs again from the locked head once the inner
    // commit moved it. The queue's bound is a second: a nested commit waiting in it would still wait at 500 ms.
    let inner: Promise<string> | undefined;
    const outcome = await audit.commit(tenant, async () => {
      inner ??= audit.commit(tenant, async () => ({ value: 'inner', events: [event(tenant, 2)] }), { queued: false });
      const first = await Promise.race([inner, new Promise((resolve) => setTimeout(() => resolve('queued'), 500))]);
      return { value: first, events: [event(tenant, 3)] };
    });
    expect(outcome).toBe('inner');
    const chain = await chainOf(tenant);
    expect(chain.events.map((e) => e.items)).toEqual([1, 2, 3]);
    expect(chain.problem).toBeNull();
  });
});
