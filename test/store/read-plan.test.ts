import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../src/store/audit-log.js';
import { bind } from '../../src/store/sql.js';
import { createTokensStore, READ_SEALED } from '../../src/store/tokens/hot.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { DISTRIBUTED } from '../helpers/citus.js';

let testDb: TestDb;
beforeAll(async () => {
  testDb = await createTestDb();
});
afterAll(async () => {
  await testDb.drop();
});

const fill = (from: number, to: number, tenant: string) =>
  testDb.owner.query(
    `INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, country, line_type)
     SELECT $3, decode(md5(g::text || $3), 'hex'), 1, '\\x00', sha256((g::text || $3)::bytea), false, 'US', 'mobile'
     FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING`,
    [from, to, tenant],
  );
// The id fill() gives row g of a tenant.
const idOf = (g: number, tenant: string) => createHash('md5').update(`${g}${tenant}`).digest();

const tokensStore = () => createTokensStore(testDb.db, createAuditLog(testDb.db, { key: Buffer.alloc(32, 3) }));

type PlanNode = Record<string, unknown>;

/** Every node of a JSON plan, flattened, each with the node types above it (nearest first). */
function nodes(plan: PlanNode, above: string[] = []): Array<{ node: PlanNode; above: string[] }> {
  const children = (plan.Plans as PlanNode[] | undefined) ?? [];
  return [{ node: plan, above }, ...children.flatMap((child) => nodes(child, [plan['Node Type'] as string, ...above]))];
}

describe('the detokenize read', () => {
  // A plan of Postgres's own; a coordinator's plan is Citus's (its shards' plans are this one).
  it.skipIf(DISTRIBUTED)('probes the primary key once per id even when the statistics say the table is tiny', async () => {
    // Statistics taken at 20 rows; then the table grows to 60,000 before anything analyzes it again.
    await fill(1, 20, 'acme');
    await testDb.owner.query('ANALYZE tokens');
    await fill(21, 60_000, 'acme');
    const ids = Array.from({ length: 1000 }, (_, i) => idOf(i * 50 + 1, 'acme'));
    // As planned for these values, and as the generic plan the vault's prepared statements run (src/store/db.ts).
    for (const planCacheMode of ['auto', 'force_generic_plan']) {
      const explained = await testDb.owner.transact(async (tx) => {
        await tx.query(`SET LOCAL plan_cache_mode = ${planCacheMode}`);
        // The read as it runs alone and with the audit append beside it; the parameters are numbered by name.
        const values = bind(READ_SEALED.alone, { tenant: 'acme', ids: Buffer.concat(ids) }).map((value) => (typeof value === 'string' ? `'${value}'` : `'\\x${(value as Buffer).toString('hex')}'::bytea`));
        await tx.query(`PREPARE read_sealed AS ${READ_SEALED.alone.text}`);
        const plan = await tx.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, unknown> }> }>(`EXPLAIN (FORMAT JSON) EXECUTE read_sealed (${values.join(', ')})`);
        await tx.query('DEALLOCATE read_sealed');
        return plan;
      });
      // The tokens table is read only by index, and each lookup sits under a nested loop over the ids.
      const reads = nodes(explained.rows[0]!['QUERY PLAN'][0]!.Plan).filter(({ node }) => node['Relation Name'] === 'tokens');
      expect(reads.length).toBeGreaterThan(0);
      for (const { node, above } of reads) {
        expect(node['Node Type']).toMatch(/^Index (Only )?Scan$/);
        expect(above.find((type) => type.endsWith('Join') || type === 'Nested Loop')).toBe('Nested Loop');
      }
    }
  });

  it("answers each request with exactly its tenant's rows, matched by the position of its ids", async () => {
    await fill(1, 30, 'globex');
    // The plan test filled these already where it runs.
    await fill(1, 20, 'acme');
    const store = tokensStore();
    const acme = [idOf(5, 'acme'), randomBytes(16), idOf(7, 'acme'), idOf(5, 'globex')];
    const globex = [idOf(5, 'acme'), idOf(5, 'globex'), idOf(30, 'globex')];
    const [forAcme, forGlobex] = await Promise.all([store.readSealed('acme', acme, []), store.readSealed('globex', globex, [])]);
    // Rows come in no particular order; each carries the very id buffer it answers.
    expect(forAcme.map((row) => row.tokenId)).toHaveLength(2);
    expect(forAcme.map((row) => row.tokenId)).toEqual(expect.arrayContaining([acme[0], acme[2]]));
    expect(forGlobex.map((row) => row.tokenId)).toHaveLength(2);
    expect(forGlobex.map((row) => row.tokenId)).toEqual(expect.arrayContaining([globex[1], globex[2]]));
    await expect(store.readSealed('acme', [randomBytes(15)], [])).rejects.toThrow('16 bytes');
  });

  it('hands back each row whole: key version, envelope bytes, fingerprint and a country that may be absent', async () => {
    const store = tokensStore();
    const [withCountry, without] = [randomBytes(16), randomBytes(16)];
    const [envelopeA, envelopeB] = [randomBytes(61), randomBytes(40_000)]; // an odd row too: wider than any i16
    const [fingerprintA, fingerprintB] = [randomBytes(32), randomBytes(32)];
    await testDb.owner.query(
      `INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, country, line_type)
       VALUES ('initech', $1, 7, $2, $5, false, 'GB', 'mobile'), ('initech', $3, 70000, $4, $6, false, NULL, 'toll_free')`,
      [withCountry, envelopeA, without, envelopeB, fingerprintA, fingerprintB],
    );
    const rows = await store.readSealed('initech', [without, randomBytes(16), withCountry], []);
    expect(rows).toHaveLength(2);
    // The fingerprint too: the envelope is bound to it.
    expect(rows).toEqual(
      expect.arrayContaining([
        { tokenId: without, keyVersion: 70000, envelope: envelopeB, fingerprint: fingerprintB, country: null },
        { tokenId: withCountry, keyVersion: 7, envelope: envelopeA, fingerprint: fingerprintA, country: 'GB' },
      ]),
    );
    expect(await store.readSealed('initech', [randomBytes(16)], [])).toEqual([]);
  });

  // A distributed database's forms: the rows as VALUES, the append beside them (src/store/tokens/hot.ts).
  it('stores, reads back and chains the same with the statements of a distributed database', async () => {
    const key = Buffer.alloc(32, 3);
    const store = createTokensStore(testDb.db, createAuditLog(testDb.db, { key, distributed: true }));
    const row = (deterministic: boolean, fingerprint = randomBytes(32)) => ({
      tokenId: randomBytes(16), keyVersion: 3, envelope: randomBytes(61), fingerprint, deterministic, country: deterministic ? null : 'FR', lineType: 'mobile' as const, expiresAt: deterministic ? null : new Date(Date.now() + 60_000),
    });
    const event = (items: number) => ({ tenant: 'values', client: 'c', action: 'tokenize', items, outcome: 'ok', requestId: null, purpose: null, occurredAt: new Date() });
    const shared = randomBytes(32);
    const [first, second] = [[row(false), row(true, shared)], [row(true, shared), row(false)]];
    const [one, two] = await Promise.all([store.insert('values', first, [event(2)]), store.insert('values', second, [event(2)])]);
    // One deterministic token for the shared fingerprint, whichever insert won.
    expect(one[1]!.tokenId).toEqual(two[0]!.tokenId);
    const read = await store.readSealed('values', [first[0]!.tokenId, second[1]!.tokenId], [event(2)]);
    expect(read.map((r) => r.envelope).sort(Buffer.compare)).toEqual([first[0]!.envelope, second[1]!.envelope].sort(Buffer.compare));
    const { rows } = await testDb.owner.query<{ n: string; expiring: string }>(`SELECT count(*) AS n, count(expires_at) AS expiring FROM tokens WHERE tenant_id = 'values'`);
    expect(rows[0]).toEqual({ n: '3', expiring: '2' });
    const events = await testDb.owner.query<{ seq: string }>(`SELECT seq FROM audit_events WHERE tenant_id = 'values' ORDER BY seq`);
    expect(events.rows.map((e) => Number(e.seq))).toEqual([1, 2, 3]);
    // A batch past what one VALUES statement takes (1,000 rows) is stored too, by the other form.
    const large = Array.from({ length: 7_500 }, () => row(false));
    expect((await store.insert('values', large, [event(7_500)])).filter(Boolean)).toHaveLength(7_500);
  });
});
