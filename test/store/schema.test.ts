import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_KEY_STATES } from '../../src/crypto/keyring.js';
import { placeTables, PLACEMENT } from '../../src/store/distribute.js';
import { DISTRIBUTED } from '../helpers/citus.js';
import { runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let testDb: TestDb;
beforeAll(async () => {
  testDb = await createTestDb();
});
afterAll(async () => {
  await testDb.drop();
});

describe('the schema', () => {
  // One list of key states: the code's (keyring, API schema, metrics) and the table's CHECK must agree.
  it("checks data key states against exactly the code's list", async () => {
    const { rows } = await testDb.owner.query<{ definition: string }>(
      `SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conrelid = 'data_keys'::regclass AND pg_get_constraintdef(oid) LIKE '%state%ANY%'`,
    );
    expect(rows).toHaveLength(1);
    const listed = [...rows[0]!.definition.matchAll(/'(\w+)'::text/g)].map((match) => match[1]);
    expect(listed.sort()).toEqual([...DATA_KEY_STATES].sort());
  });

  // A migration that adds a table must say where it goes on a distributed database (src/store/distribute.ts).
  it('has exactly the tables the distribution places, each tenant table keyed by tenant_id', async () => {
    const tables = await testDb.owner.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`);
    expect(tables.rows.map((row) => row.name)).toEqual([...PLACEMENT.byTenant, ...PLACEMENT.coordinator].sort());
    // Citus keeps a unique index only where it holds the distribution column.
    const unique = await testDb.owner.query<{ table: string; index: string; columns: string[] }>(
      `SELECT t.relname AS table, i.relname AS index, array_agg(a.attname::text) AS columns FROM pg_index x
       JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey)
       WHERE x.indisunique AND t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1) GROUP BY 1, 2`,
      [[...PLACEMENT.byTenant]],
    );
    expect(new Set(unique.rows.map((row) => row.table))).toEqual(new Set(PLACEMENT.byTenant));
    for (const row of unique.rows) expect(row.columns, `${row.table}.${row.index}`).toContain('tenant_id');
  });

  it.skipIf(DISTRIBUTED)('is refused distribution, writing nothing, where there is no Citus', async () => {
    await expect(testDb.owner.transact((tx) => placeTables(tx))).rejects.toThrow(/no citus extension/);
    const refused = await runCli(['distribute'], { DATABASE_URL: testDb.url });
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/no citus extension/);
  });
});
