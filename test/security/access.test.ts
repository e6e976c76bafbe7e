import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatToken, newTokenId } from '../../src/crypto/tokens.js';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
let token: string;
beforeAll(async () => {
  t = await build();
  token = (await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ scope: 'tokenize' }), payload: { phone: NUMBERS.us.e164 } })).json().token;
});
afterAll(async () => {
  await t.close();
});

interface Endpoint {
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  url: () => string;
  payload?: () => object;
  scopes: string[];
  ok: number;
}

// Every /v1 endpoint, with the scopes that open it. Erasing and destroying use fresh or harmless targets.
const ENDPOINTS: Endpoint[] = [
  { name: 'tokenize', method: 'POST', url: () => '/v1/tokenize', payload: () => ({ phone: NUMBERS.gb.e164 }), scopes: ['tokenize'], ok: 201 },
  { name: 'tokenize batch', method: 'POST', url: () => '/v1/tokenize/batch', payload: () => ({ items: [{ phone: NUMBERS.gb.e164 }] }), scopes: ['tokenize'], ok: 200 },
  { name: 'detokenize', method: 'POST', url: () => '/v1/detokenize', payload: () => ({ tokens: [token] }), scopes: ['detokenize', 'detokenize:masked'], ok: 200 },
  { name: 'lookup', method: 'POST', url: () => '/v1/lookup', payload: () => ({ phone: NUMBERS.us.e164 }), scopes: ['lookup'], ok: 200 },
  { name: 'metadata', method: 'GET', url: () => `/v1/tokens/${token}`, scopes: ['detokenize', 'detokenize:masked', 'lookup'], ok: 200 },
  { name: 'delete token', method: 'DELETE', url: () => `/v1/tokens/${formatToken(newTokenId())}`, scopes: ['erase'], ok: 404 },
  { name: 'erase number', method: 'POST', url: () => '/v1/erase', payload: () => ({ phone: NUMBERS.invalid.e164.replace('0199', '0198') }), scopes: ['erase'], ok: 400 },
  { name: 'list keys', method: 'GET', url: () => '/v1/keys', scopes: ['admin'], ok: 200 },
  { name: 'rotate key', method: 'POST', url: () => '/v1/keys/rotate', scopes: ['admin'], ok: 200 },
  { name: 'destroy key', method: 'POST', url: () => '/v1/keys/999/destroy', scopes: ['admin'], ok: 404 },
  { name: 'audit', method: 'GET', url: () => '/v1/audit', scopes: ['admin'], ok: 200 },
];
const ALL_SCOPES = ['tokenize', 'detokenize', 'detokenize:masked', 'lookup', 'erase', 'admin'];

const call = (endpoint: Endpoint, headers: Record<string, string>) =>
  t.app.inject({ method: endpoint.method, url: endpoint.url(), headers, ...(endpoint.payload ? { payload: endpoint.payload() } : {}) });

describe('access control', () => {
  it('opens each endpoint to exactly its scopes: the full matrix of endpoints × scopes', async () => {
    for (const endpoint of ENDPOINTS) {
      for (const scope of ALL_SCOPES) {
        const res = await call(endpoint, bearer({ sub: `matrix-${scope}`, scope }));
        if (endpoint.scopes.includes(scope)) {
          expect(res.statusCode, `${endpoint.name} with ${scope}`).toBe(endpoint.ok);
        } else {
          expect(res.statusCode, `${endpoint.name} with ${scope}`).toBe(403);
          expect(res.json().code).toBe('insufficient_scope');
        }
      }
      const anonymous = await call(endpoint, {});
      expect(anonymous.statusCode, `${endpoint.name} anonymous`).toBe(401);
      expect(anonymous.json().code).toBe('unauthorized');
    }
  });

  it("answers every token-taking endpoint about another tenant's token exactly as about a token that does not exist", async () => {
    const missing = formatToken(newTokenId());
    const other = bearer({ tenant: 'globex', scope: 'detokenize lookup erase' });
    const pairs: Array<[string, (tok: string) => Promise<{ statusCode: number; body: string }>]> = [
      ['detokenize', (tok) => t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: other, payload: { tokens: [tok] } })],
      ['metadata', (tok) => t.app.inject({ method: 'GET', url: `/v1/tokens/${tok}`, headers: other })],
      ['delete', (tok) => t.app.inject({ method: 'DELETE', url: `/v1/tokens/${tok}`, headers: other })],
    ];
    for (const [name, request] of pairs) {
      const foreign = await request(token);
      const absent = await request(missing);
      expect(foreign.statusCode, name).toBe(absent.statusCode);
      const normalise = (text: string, tok: string) => text.replaceAll(tok, 'TOKEN').replace(/urn:phonevault:request:[0-9a-f-]+/, 'REQUEST');
      expect(normalise(foreign.body, token), name).toBe(normalise(absent.body, missing));
    }
    expect((await t.app.inject({ method: 'POST', url: '/v1/lookup', headers: other, payload: { phone: NUMBERS.us.e164 } })).json()).toEqual({ tokens: [], next: null });
    expect((await t.app.inject({ method: 'POST', url: '/v1/erase', headers: other, payload: { phone: NUMBERS.us.e164 } })).json()).toEqual({ erased: 0 });
    // And the token is untouched in its own tenant.
    const own = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ scope: 'detokenize' }), payload: { tokens: [token] } });
    expect(own.json().results[0].phone).toBe(NUMBERS.us.e164);
  });

  it('answers with allow-listed fields only', async () => {
    const all = bearer({ sub: 'fields', scope: ALL_SCOPES.join(' ') });
    const shapes: Array<[Endpoint['method'], string, object | undefined, (body: any) => unknown]> = [
      ['POST', '/v1/tokenize', { phone: NUMBERS.de.e164 }, (b) => Object.keys(b).sort()],
      ['POST', '/v1/tokenize/batch', { items: [{ phone: NUMBERS.de.e164 }, { phone: 'x' }] }, (b) => b.results.map((r: object) => Object.keys(r).sort())],
      ['POST', '/v1/detokenize', { tokens: [token, formatToken(newTokenId())] }, (b) => b.results.map((r: object) => Object.keys(r).sort())],
      ['GET', `/v1/tokens/${token}`, undefined, (b) => Object.keys(b).sort()],
      ['GET', '/v1/keys', undefined, (b) => Object.keys(b.keys[0]).sort()],
      ['GET', '/v1/audit?limit=1', undefined, (b) => [Object.keys(b).sort(), Object.keys(b.events[0]).sort()]],
    ];
    const expected = [
      ['country', 'deterministic', 'expiresAt', 'lineType', 'token'],
      [['country', 'index', 'lineType', 'token'], ['error', 'index']],
      [['country', 'phone', 'token'], ['error', 'token']],
      ['country', 'createdAt', 'deterministic', 'expiresAt', 'lineType', 'token'],
      ['createdAt', 'destroyedAt', 'encryptions', 'kek', 'retiredAt', 'state', 'tokens', 'version'],
      [['events', 'next'], ['action', 'client', 'items', 'occurredAt', 'outcome', 'purpose', 'requestId', 'seq']],
    ];
    for (const [index, [method, url, payload, keys]] of shapes.entries()) {
      const res = await t.app.inject({ method, url, headers: all, ...(payload ? { payload } : {}) });
      expect(keys(res.json()), url).toEqual(expected[index]);
    }
  });

  it('refuses oversized headers at the HTTP layer', async () => {
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = t.app.server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { 'x-padding': 'x'.repeat(20_000) } });
    expect(res.status).toBe(431);
  });
});

describe('enumeration', () => {
  it('throttles a client guessing tokens, per request and per item', async () => {
    const limited = await build({
      rateLimits: { ...t.config.rateLimits, detokenize: { max: 1000, windowMs: 60_000 }, lookup: { max: 20, windowMs: 60_000 }, detokenizeItems: { max: 500, windowMs: 3_600_000 } },
    });
    try {
      const headers = bearer({ sub: 'guesser', scope: 'detokenize lookup' });
      const guesses = () => Array.from({ length: 100 }, () => formatToken(newTokenId()));
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) statuses.push((await limited.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: guesses() } })).statusCode);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
      const probes: number[] = [];
      for (let i = 0; i < 22; i++) probes.push((await limited.app.inject({ method: 'GET', url: `/v1/tokens/${formatToken(newTokenId())}`, headers })).statusCode);
      expect(probes.slice(0, 20).every((status) => status === 404)).toBe(true);
      expect(probes.slice(20)).toEqual([429, 429]);
    } finally {
      await limited.close();
    }
  });
});
