import { afterAll, beforeAll, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';

let t: TestApp;
beforeAll(async () => { t = await build(); });
afterAll(async () => { await t.close(); });

it('smoke', async () => {
  const res = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer(), payload: { phone: '+1 201 555 0123' } });
  console.log(res.statusCode, res.body);
  const tok = res.json().token;
  const d = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer(), payload: { tokens: [tok] } });
  console.log(d.statusCode, d.body);
  const bad = await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...bearer(), 'content-type': 'application/json' }, payload: '{"phone": +12015550123' });
  console.log(bad.statusCode, bad.body);
  console.log(t.rawLogs.join('\n'));
  expect(res.statusCode).toBe(201);
});
