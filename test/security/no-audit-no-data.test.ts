import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatToken, newTokenId } from '../../src/crypto/tokens.js';
import { bearer, build, mintJwt, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

// Issue 14, item 1: an audited write or read whose event cannot be committed stores nothing and decrypts
// nothing, on every path; one request's trouble never touches another's; identities are data.
let t: TestApp;
beforeAll(async () => {
  t = await build({ keyRotationMinIntervalMs: 0 });
});
afterAll(async () => {
  await t.close();
});

const all = 'tokenize detokenize detokenize:masked lookup erase admin';
const count = async (sql: string, values: unknown[] = []) => Number((await t.testDb.owner.query<{ n: string }>(sql, values)).rows[0]!.n);
const tokensOf = (tenant: string) => count('SELECT count(*) AS n FROM tokens WHERE tenant_id = $1', [tenant]);
const eventsOf = (tenant: string) => count('SELECT count(*) AS n FROM audit_events WHERE tenant_id = $1', [tenant]);

/** Makes Postgres refuse every audit event of one tenant (or client), as a full disk or a broken trigger would. */
async function refuseEventsOf(value: string, column: 'tenant_id' | 'client' = 'tenant_id'): Promise<() => Promise<void>> {
  const fn = `refuse_${column}_${value.replace(/\W/g, '_')}`;
  await t.testDb.owner.query(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.${column} = '${value}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$`);
  await t.testDb.owner.query(`CREATE TRIGGER ${fn} BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
  return async () => {
    await t.testDb.owner.query(`DROP TRIGGER ${fn} ON audit_events`);
    await t.testDb.owner.query(`DROP FUNCTION ${fn}()`);
  };
}

describe('no audit, no data', () => {
  it('stores nothing, decrypts nothing and changes no key on any path whose event cannot be written', async () => {
    const headers = bearer({ tenant: 'walled', scope: all });
    const batch = (await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers, payload: { items: [{ phone: NUMBERS.us.e164 }, { phone: NUMBERS.gb.e164 }] } })).json();
    const [token, other] = batch.results.map((r: { token: string }) => r.token);
    const before = { tokens: await tokensOf('walled'), events: await eventsOf('walled') };
    const restore = await refuseEventsOf('walled');
    try {
      const calls = [
        { method: 'POST', url: '/v1/tokenize', payload: { phone: NUMBERS.de.e164 } },
        { method: 'POST', url: '/v1/tokenize', payload: { phone: NUMBERS.de.e164, deterministic: true } },
        { method: 'POST', url: '/v1/tokenize/batch', payload: { items: [{ phone: NUMBERS.fr.e164 }, { phone: NUMBERS.de.e164 }] } },
        { method: 'POST', url: '/v1/detokenize', payload: { tokens: [token] } },
        { method: 'POST', url: '/v1/detokenize', payload: { tokens: [token], redaction: 'masked' } },
        { method: 'POST', url: '/v1/lookup', payload: { phone: NUMBERS.us.e164 } },
        { method: 'GET', url: `/v1/tokens/${token}` },
        { method: 'DELETE', url: `/v1/tokens/${other}` },
        { method: 'POST', url: '/v1/erase', payload: { phone: NUMBERS.us.e164 } },
        { method: 'POST', url: '/v1/keys/rotate' },
        { method: 'GET', url: '/v1/keys' },
        { method: 'GET', url: '/v1/audit' },
      ] as const;
      for (const call of calls) {
        const res = await t.app.inject({ ...call, headers } as never);
        expect(res.statusCode, `${call.method} ${call.url}`).toBe(503);
        expect(res.json().code).toBe('unavailable');
        for (const spelling of [NUMBERS.us.e164, NUMBERS.us.digits, NUMBERS.gb.digits, '0123']) expect(res.body).not.toContain(spelling);
      }
    } finally {
      await restore();
    }
    expect(await tokensOf('walled')).toBe(before.tokens);
    expect(await eventsOf('walled')).toBe(before.events);
    // The key did not rotate, the erasures erased nothing, and everything still reads.
    const keys = (await t.app.inject({ method: 'GET', url: '/v1/keys', headers })).json().keys;
    expect(keys.map((k: { version: number; state: string }) => [k.version, k.state])).toEqual([[1, 'active']]);
    const read = (await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: [token, other] } })).json();
    expect(read.results.map((r: { phone: string }) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
  });

  it("never fails, retries or slows another tenant's requests when one tenant's events cannot be written", async () => {
    const poisoned = bearer({ tenant: 'poisoned', scope: 'tokenize detokenize' });
    const healthy = bearer({ tenant: 'healthy', scope: 'tokenize detokenize' });
    const token = (await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: healthy, payload: { phone: NUMBERS.fr.e164 } })).json().token;
    const restore = await refuseEventsOf('poisoned');
    try {
      const started = performance.now();
      const answers = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          i % 3 === 0
            ? t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: poisoned, payload: { phone: NUMBERS.de.e164 } })
            : t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: healthy, payload: { tokens: [token] } }),
        ),
      );
      const elapsed = performance.now() - started;
      answers.forEach((res, i) => expect(res.statusCode, String(i)).toBe(i % 3 === 0 ? 503 : 200));
      expect(answers.filter((_, i) => i % 3 !== 0).every((res) => res.json().results[0].phone === NUMBERS.fr.e164)).toBe(true);
      expect(elapsed).toBeLessThan(5_000);
    } finally {
      await restore();
    }
    expect(await tokensOf('poisoned')).toBe(0);
    // Its first keys, the tokenize, the forty reads.
    expect(await eventsOf('healthy')).toBe(42);
  });

  it("never fails another client's request of the same tenant when one client's events cannot be written", async () => {
    const tokenOf = async (sub: string) =>
      (await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant: 'shared', sub, scope: 'tokenize detokenize' }), payload: { phone: NUMBERS.gb.e164 } })).json().token as string;
    const [token] = [await tokenOf('goodclient'), await tokenOf('badclient')];
    const restore = await refuseEventsOf('badclient', 'client');
    try {
      // Concurrent calls of one tenant share statements: the bad client's event must not take the others down.
      for (const [url, payload] of [
        ['/v1/detokenize', { tokens: [token] }],
        ['/v1/tokenize', { phone: NUMBERS.de.e164 }],
      ] as const) {
        const answers = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            t.app.inject({ method: 'POST', url, headers: bearer({ tenant: 'shared', sub: i % 2 === 0 ? 'badclient' : 'goodclient', scope: 'tokenize detokenize' }), payload }),
          ),
        );
        answers.forEach((res, i) => expect(res.statusCode, `${url} ${i}`).toBe(i % 2 === 0 ? 503 : url === '/v1/tokenize' ? 201 : 200));
      }
    } finally {
      await restore();
    }
    expect(await count(`SELECT count(*) AS n FROM audit_events WHERE tenant_id = 'shared' AND client = 'badclient'`)).toBe(1);
  });

  it('gives a new tenant no keys while its events cannot be written', async () => {
    const headers = bearer({ tenant: 'keyless', scope: all });
    const restore = await refuseEventsOf('keyless');
    try {
      for (const call of [
        { method: 'POST', url: '/v1/tokenize', payload: { phone: NUMBERS.de.e164 } },
        { method: 'POST', url: '/v1/keys/rotate' },
      ] as const) {
        expect((await t.app.inject({ ...call, headers } as never)).statusCode, call.url).toBe(503);
      }
    } finally {
      await restore();
    }
    expect(await count(`SELECT count(*) AS n FROM tenant_keys WHERE tenant_id = 'keyless'`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM data_keys WHERE tenant_id = 'keyless'`)).toBe(0);
    // Once the trail takes events again, the first rotation gives the tenant its first keys, at once.
    const rotated = await t.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers });
    expect(rotated.json()).toEqual({ activeVersion: 1 });
  });

  it("records every other tenant's and client's refusals when some cannot be written", async () => {
    await t.app.flushRefusals();
    const restore = await refuseEventsOf('vic');
    const refusalsOf = (tenant: string) => count(`SELECT count(*) AS n FROM audit_events WHERE tenant_id = $1 AND outcome = 'denied'`, [tenant]);
    try {
      for (const tenant of ['vic', 'bystander', 'vic']) {
        for (const sub of ['app3', 'app4']) {
          const res = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant, sub, scope: 'tokenize' }), payload: { tokens: [formatToken(newTokenId())] } });
          expect(res.statusCode).toBe(403);
        }
      }
      await t.app.flushRefusals();
    } finally {
      await restore();
    }
    expect(await refusalsOf('vic')).toBe(0);
    expect(await refusalsOf('bystander')).toBe(2);
    expect(t.logs.some((line) => line.msg === 'refusal counts not recorded' && line.tenant === 'vic')).toBe(true);
  });
});

describe('identities are data', () => {
  it('refuses control characters, line separators, lone surrogates and over-long values in sub and tenant (401)', async () => {
    const stored = await count('SELECT count(*) AS n FROM tokens');
    const bad = ['\u0000', '\u0007', '\n', '\u0085', '\u2028', '\u2029', '\ud800', '\udfff'];
    for (const char of bad) {
      for (const claims of [{ sub: `crm${char}` }, { tenant: `acme${char}` }, { scope: `tokenize${char}` }]) {
        const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${mintJwt(claims)}` }, payload: { phone: NUMBERS.us.e164 } });
        expect(res.statusCode, JSON.stringify(claims)).toBe(401);
        expect(res.json().code).toBe('unauthorized');
      }
    }
    for (const claims of [{ sub: 'c'.repeat(129) }, { tenant: 't'.repeat(65) }, { sub: 42 }, { tenant: ['acme'] }, { scope: 'x'.repeat(1025) }] as Array<Record<string, unknown>>) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${mintJwt(claims)}` }, payload: { phone: NUMBERS.us.e164 } });
      expect(res.statusCode, JSON.stringify(claims)).toBe(401);
    }
    expect(await count('SELECT count(*) AS n FROM tokens')).toBe(stored);
  });

  it('refuses a sub or tenant that is or holds a phone number, so that none reaches a log line or an audit row', async () => {
    for (const claims of [
      { sub: NUMBERS.us.e164 },
      { sub: NUMBERS.us.digits },
      { sub: `tel:${NUMBERS.gb.e164}` },
      { sub: `sms|${NUMBERS.de.e164.slice(1)}` },
      { sub: '201-555-0123' },
      // Digits in groups, after letters, between any separators: still a number in every log line.
      { sub: '201_555_0123' },
      { sub: 'x:201:555:0123' },
      { sub: 'user-2015550123' },
      { sub: 'tel2015550123' },
      { sub: 'a=+1=201=555=0123' },
      { tenant: NUMBERS.fr.e164.slice(1) },
      { tenant: 't-2015550123' },
    ]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${mintJwt(claims)}` }, payload: { phone: NUMBERS.us.e164 } });
      expect(res.statusCode, JSON.stringify(claims)).toBe(401);
    }
    // Nothing of them was logged or recorded (the global leak scan covers every line and audit row as well).
    const text = `${t.rawLogs.join('\n')}${JSON.stringify((await t.testDb.owner.query('SELECT client, tenant_id FROM audit_events')).rows)}`;
    for (const spelling of [NUMBERS.us.e164, NUMBERS.us.digits, NUMBERS.gb.e164, NUMBERS.fr.e164.slice(1)]) expect(text).not.toContain(spelling);
  });
});

describe('x-purpose', () => {
  it('records a configured purpose and its short reference, and refuses free text (400 invalid_purpose) before anything happens', async () => {
    const headers = bearer({ tenant: 'purposes', scope: 'tokenize' });
    const ok = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...headers, 'x-purpose': 'support:INC-4711' }, payload: { phone: NUMBERS.us.e164 } });
    expect(ok.statusCode).toBe(201);
    for (const purpose of ['ref 20 15', 'ref 55 50', 'support:2015550123', 'two zero one five five five zero one two three', 'support ticket 4711', 'billing:20155501']) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...headers, 'x-purpose': purpose }, payload: { phone: NUMBERS.gb.e164 } });
      expect(res.statusCode, purpose).toBe(400);
      expect(res.json().code).toBe('invalid_purpose');
      expect(res.body).not.toContain(purpose);
    }
    expect(await tokensOf('purposes')).toBe(1);
    const purposes = (await t.testDb.owner.query<{ purpose: string | null }>(`SELECT purpose FROM audit_events WHERE tenant_id = 'purposes' AND outcome = 'ok' AND action <> 'keys_create'`)).rows;
    expect(purposes).toEqual([{ purpose: 'support:INC-4711' }]);
  });
});
