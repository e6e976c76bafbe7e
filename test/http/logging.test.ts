import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, mintJwt, type TestApp } from '../helpers/build.js';
import { ALL_SPELLINGS, findLeaks, NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

describe('logging', () => {
  it('writes one JSON line per request with a request id, and never a number, a body or a JWT', async () => {
    const jwt = mintJwt({ scope: 'tokenize detokenize detokenize:masked' });
    const headers = { authorization: `Bearer ${jwt}` };
    const tokens: string[] = [];
    for (const number of Object.values(NUMBERS)) {
      for (const phone of [number.e164, number.national, number.digits]) {
        const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone, country: number.country } });
        if (res.statusCode === 201) tokens.push(res.json().token);
      }
    }
    await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers, payload: { items: Object.values(NUMBERS).map((n) => ({ phone: n.national, country: n.country })) } });
    await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens } });
    await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens, redaction: 'masked' } });
    // Numbers in places they do not belong: query, path, a header, malformed JSON, unknown keys.
    await t.app.inject({ method: 'POST', url: `/v1/tokenize?phone=${encodeURIComponent(NUMBERS.gb.e164)}`, headers, payload: { phone: NUMBERS.gb.e164 } });
    await t.app.inject({ method: 'GET', url: `/v1/${NUMBERS.de.e164}`, headers });
    await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...headers, 'x-request-id': NUMBERS.fr.e164, 'content-type': 'application/json' }, payload: `{"phone": ${NUMBERS.fr.e164}` });
    await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { [NUMBERS.us.e164]: NUMBERS.us.e164 } });
    await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${jwt}x` }, payload: { phone: NUMBERS.us.e164 } });

    const requestLines = t.logs.filter((line) => line.msg === 'request');
    expect(requestLines.length).toBeGreaterThanOrEqual(Object.keys(NUMBERS).length * 3 + 7);
    for (const line of requestLines) {
      expect(line.reqId).toMatch(/^[0-9a-f-]{36}$/);
      expect(line).not.toHaveProperty('body');
      expect(line).not.toHaveProperty('req');
      expect(line).not.toHaveProperty('url');
    }
    // A client-sent request id is never adopted.
    expect(t.logs.some((line) => line.reqId === NUMBERS.fr.e164)).toBe(false);

    const text = t.rawLogs.join('\n');
    expect(ALL_SPELLINGS.length).toBeGreaterThan(20);
    expect(findLeaks(text)).toEqual([]);
    expect(text).not.toContain(jwt.split('.')[2]);
    expect(text.toLowerCase()).not.toContain('authorization');
  });
});
