import { describe, expect, it } from 'vitest';
import { classifyDriverError, createPgDb, StorageUnavailableError } from '../../src/store/db.js';

describe('driver error classification', () => {
  it("keeps Postgres's own answers and turns connection failures into StorageUnavailableError", () => {
    const unique = Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' });
    expect(classifyDriverError(unique)).toBe(unique);
    for (const error of [
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
      new Error('timeout exceeded when trying to connect'),
      new Error('Connection terminated unexpectedly'),
    ]) {
      expect(classifyDriverError(error)).toBeInstanceOf(StorageUnavailableError);
    }
  });

  it('classifies a real refused connection, for queries and transactions alike', async () => {
    const db = createPgDb({ connectionString: 'postgres://postgres@127.0.0.1:1/none' });
    try {
      await expect(db.query('SELECT 1')).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(db.transact(async (tx) => tx.query('SELECT 1'))).rejects.toBeInstanceOf(StorageUnavailableError);
    } finally {
      await db.close();
    }
  });
});
