import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
beforeAll(async () => {
  t = await build();
  // A real failure inside the statement, on one row of the batch: Postgres itself refuses French numbers.
  // One command a query: a distributed database passes each on to its workers (test/helpers/citus.ts).
  await t.testDb.owner.query(`
    CREATE FUNCTION refuse_fr() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.country = 'FR' THEN RAISE EXCEPTION 'refused by test trigger'; END IF; RETURN NEW; END $$`);
  await t.testDb.owner.query('CREATE TRIGGER refuse_fr BEFORE INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION refuse_fr()');
});
afterAll(async () => {
  await t.close();
});

const count = async () => Number((await t.testDb.db.query<{ n: string }>('SELECT count(*) AS n FROM tokens')).rows[0]!.n);

describe('batch atomicity', () => {
  it('stores none of a batch when one row fails, and answers 500 without detail', async () => {
    const before = await count();
    const items = [NUMBERS.us, NUMBERS.gb, NUMBERS.fr, NUMBERS.de].map((n) => ({ phone: n.e164 }));
    const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers: bearer(), payload: { items } });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toMatchObject({ code: 'internal_error', detail: 'the request could not be completed' });
    expect(res.body).not.toContain('trigger');
    expect(await count()).toBe(before);
    // The driver's message never reaches the log either: only its class and SQLSTATE.
    const failure = t.logs.find((line) => line.msg === 'request failed');
    expect(failure?.err).toEqual({ type: 'error', code: 'P0001' });
    expect(t.rawLogs.join('\n')).not.toContain('refused by test trigger');
  });

  it('stores all of a batch when every row is accepted', async () => {
    const before = await count();
    const items = [NUMBERS.us, NUMBERS.gb, NUMBERS.de].map((n) => ({ phone: n.e164 }));
    const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers: bearer(), payload: { items } });
    expect(res.statusCode).toBe(200);
    expect(await count()).toBe(before + 3);
  });
});
