import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatToken, newTokenId } from '../../src/crypto/tokens.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const tokenize = (tenant: string, phone: string, deterministic = false) =>
  t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant, scope: 'tokenize' }), payload: { phone, deterministic } });
const detokenize = (tenant: string, tokens: string[], scope = 'detokenize') =>
  t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant, scope }), payload: { tokens } });

describe('tenant isolation', () => {
  it("answers another tenant's token exactly like a token that does not exist", async () => {
    const acmeToken = (await tokenize('acme', NUMBERS.us.e164)).json().token;
    const missing = formatToken(newTokenId());
    for (const scope of ['detokenize', 'detokenize:masked']) {
      const foreign = await detokenize('globex', [acmeToken], scope);
      const absent = await detokenize('globex', [missing], scope);
      expect(foreign.statusCode).toBe(absent.statusCode);
      expect(foreign.json().results[0]).toEqual({ token: acmeToken, error: { code: 'not_found' } });
      expect(absent.json().results[0]).toEqual({ token: missing, error: { code: 'not_found' } });
      expect(foreign.body).not.toContain(NUMBERS.us.digits);
    }
    expect((await detokenize('acme', [acmeToken])).json().results[0].phone).toBe(NUMBERS.us.e164);
  });

  it('gives the same number different deterministic tokens in different tenants', async () => {
    const a = (await tokenize('acme', NUMBERS.gb.e164, true)).json().token;
    const b = (await tokenize('globex', NUMBERS.gb.e164, true)).json().token;
    expect(a).not.toBe(b);
    expect((await detokenize('globex', [a])).json().results[0].error.code).toBe('not_found');
  });

  it('keeps a separate data key and fingerprint key per tenant', async () => {
    await tokenize('initech', NUMBERS.de.e164);
    const keys = await t.testDb.db.query<{ tenant_id: string; wrapped_key: Buffer }>('SELECT tenant_id, wrapped_key FROM data_keys');
    const tenants = keys.rows.map((row) => row.tenant_id).sort();
    expect(tenants).toEqual(['acme', 'globex', 'initech']);
    expect(new Set(keys.rows.map((row) => row.wrapped_key.toString('hex'))).size).toBe(3);
    const fingerprints = await t.testDb.db.query<{ fingerprint: Buffer }>('SELECT fingerprint FROM tokens WHERE deterministic');
    expect(new Set(fingerprints.rows.map((row) => row.fingerprint.toString('hex'))).size).toBe(2);
  });

  // The tenant is only ever the verified claim: nothing in the request can pick another one.
  it('ignores tenant hints in headers, query and body', async () => {
    const acmeToken = (await tokenize('acme', NUMBERS.fr.e164)).json().token;
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/detokenize?tenant=acme',
      headers: { ...bearer({ tenant: 'globex', scope: 'detokenize' }), 'x-tenant': 'acme', 'x-tenant-id': 'acme' },
      payload: { tokens: [acmeToken] },
    });
    expect(res.json().results[0].error.code).toBe('not_found');
    const withBodyTenant = await t.app.inject({
      method: 'POST',
      url: '/v1/detokenize',
      headers: bearer({ tenant: 'globex', scope: 'detokenize' }),
      payload: { tokens: [acmeToken], tenant: 'acme' },
    });
    expect(withBodyTenant.statusCode).toBe(400);
    expect(withBodyTenant.json().code).toBe('invalid_request');
  });
});
