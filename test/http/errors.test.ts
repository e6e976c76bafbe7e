import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

let t: TestApp;
beforeAll(async () => {
  t = await build({ batchMax: 50, bodyLimit: 16 * 1024 });
});
afterAll(async () => {
  await t.close();
});

const post = (url: string, payload: string | object, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, headers: { ...bearer({ scope: 'tokenize detokenize' }), 'content-type': 'application/json', ...headers }, payload });

async function expectProblem(res: Awaited<ReturnType<typeof post>>, status: number, code: string) {
  expect(res.statusCode).toBe(status);
  expect(res.headers['content-type']).toContain('application/problem+json');
  const body = res.json();
  expect(body).toMatchObject({ status, code, type: `urn:phonevault:problem:${code}` });
  expect(typeof body.title).toBe('string');
  expect(typeof body.detail).toBe('string');
  expect(body.instance).toBe(`urn:phonevault:request:${res.headers['x-request-id']}`);
  for (const spelling of [NUMBERS.us.digits, NUMBERS.us.e164, '201555']) expect(res.body).not.toContain(spelling);
}

describe('problem+json errors', () => {
  it('malformed JSON is invalid_json and never quotes the body', async () => {
    for (const body of [`{"phone": ${NUMBERS.us.e164}`, `{"phone": "${NUMBERS.us.e164}"`, '{', `[${NUMBERS.us.digits}`, 'null x']) {
      await expectProblem(await post('/v1/tokenize', body), 400, 'invalid_json');
    }
  });

  it('a body that is not UTF-8 is invalid_json, wherever the bad bytes are and whatever they would decode to', async () => {
    const e164 = Buffer.from(NUMBERS.us.e164);
    const bad = [
      Buffer.from([0xff]), // never in UTF-8
      Buffer.from([0x80]), // a lone continuation byte
      Buffer.from([0xc0, 0xab]), // an overlong '+'
      Buffer.from([0xed, 0xa0, 0x80]), // a UTF-16 surrogate
      Buffer.from([0xf4, 0x90, 0x80, 0x80]), // past U+10FFFF
      Buffer.from([0xe2, 0x82]), // a sequence cut short
    ];
    for (const bytes of bad) {
      for (const body of [
        Buffer.concat([Buffer.from('{"phone":"'), e164, bytes, Buffer.from('"}')]),
        Buffer.concat([Buffer.from('{"phone":"'), e164, Buffer.from('","'), bytes, Buffer.from('":1}')]),
        Buffer.concat([Buffer.from(`{"phone":"${NUMBERS.us.e164}"}`), bytes]),
      ]) {
        await expectProblem(await post('/v1/tokenize', body), 400, 'invalid_json');
      }
      await expectProblem(await post('/v1/tokenize/batch', Buffer.concat([Buffer.from('{"items":[{"phone":"'), bytes, e164, Buffer.from('"}]}')])), 400, 'invalid_json');
    }
    // Valid UTF-8 beyond ASCII still reaches the schema, which judges the text itself.
    await expectProblem(await post('/v1/tokenize', Buffer.from(`{"phone":"${NUMBERS.us.e164}","é":1}`)), 400, 'invalid_request');
    expect((await post('/v1/tokenize', Buffer.from(`{"phone":"${NUMBERS.us.e164}"}`))).statusCode).toBe(201);
  });

  it('an empty body with a JSON content type is a 400', async () => {
    const res = await post('/v1/tokenize', '');
    expect(res.statusCode).toBe(400);
    expect(['invalid_json', 'invalid_request']).toContain(res.json().code);
  });

  it('wrong types are invalid_request naming the field, not the value', async () => {
    for (const payload of [{ phone: 2015550123 }, { phone: ['+12015550123'] }, { phone: null }, { phone: NUMBERS.us.e164, deterministic: 'yes' }, { phone: NUMBERS.us.e164, ttlSeconds: 1.5 }, { phone: NUMBERS.us.e164, country: 1 }]) {
      const res = await post('/v1/tokenize', payload);
      await expectProblem(res, 400, 'invalid_request');
    }
    expect((await post('/v1/tokenize', { phone: 2015550123 })).json().detail).toBe('phone: expected string');
  });

  it('unknown fields are refused, and their names are not echoed (a key could be a number)', async () => {
    const res = await post('/v1/tokenize', { phone: NUMBERS.us.e164, [NUMBERS.us.e164]: true });
    await expectProblem(res, 400, 'invalid_request');
    expect(res.json().detail).toBe('body: unknown field');
  });

  it('prototype pollution attempts are refused', async () => {
    const res = await post('/v1/tokenize', `{"phone":"${NUMBERS.gb.e164}","__proto__":{"admin":true}}`);
    expect(res.statusCode).toBe(400);
    expect(['invalid_json', 'invalid_request']).toContain(res.json().code);
  });

  it('an overlong phone field is invalid_request', async () => {
    await expectProblem(await post('/v1/tokenize', { phone: '1'.repeat(65) }), 400, 'invalid_request');
  });

  it('a body over the limit is payload_too_large', async () => {
    const items = Array.from({ length: 40 }, () => ({ phone: `${NUMBERS.us.e164}${' '.repeat(400)}` }));
    await expectProblem(await post('/v1/tokenize/batch', { items }), 413, 'payload_too_large');
  });

  it('a batch over BATCH_MAX is invalid_request', async () => {
    const items = Array.from({ length: 51 }, () => ({ phone: NUMBERS.us.e164 }));
    const res = await post('/v1/tokenize/batch', { items });
    await expectProblem(res, 400, 'invalid_request');
    expect(res.json().detail).toBe('items: at most 50 items');
  });

  it('a body that is not JSON is unsupported_media_type', async () => {
    await expectProblem(await post('/v1/tokenize', `phone=${NUMBERS.us.e164}`, { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
    await expectProblem(await post('/v1/tokenize', NUMBERS.us.e164, { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
  });

  it('unknown routes and methods are not_found problems, and the path is not logged', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/v1/numbers/${NUMBERS.us.e164}`, headers: bearer() });
    await expectProblem(res, 404, 'not_found');
    await expectProblem(await t.app.inject({ method: 'GET', url: '/v1/tokenize', headers: bearer() }), 404, 'not_found');
    expect(t.rawLogs.join('\n')).not.toContain('/v1/numbers');
  });
});
