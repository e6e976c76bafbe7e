import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_KEY_STATES } from '../../src/crypto/keyring.js';
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
});
