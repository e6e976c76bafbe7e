import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { EXAMPLES, KNOWN_INVALID } from '../helpers/examples.js';

const examples = EXAMPLES;

let t: TestApp;
beforeAll(async () => {
  // Batches of 1000 parse, seal and open on a worker thread (src/vault/offload.ts): every example goes through it.
  t = await build({ offloadThreads: 1 });
});
afterAll(async () => {
  await t.close();
});

async function roundTrip(items: Array<{ phone: string; country?: string }>): Promise<Array<string | null>> {
  const out: Array<string | null> = [];
  for (let start = 0; start < items.length; start += 1000) {
    const chunk = items.slice(start, start + 1000);
    const tokenized = await t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers: bearer(), payload: { items: chunk } });
    expect(tokenized.statusCode).toBe(200);
    const results = tokenized.json().results as Array<{ token?: string }>;
    const tokens = results.filter((r) => r.token).map((r) => r.token!);
    const detokenized = await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer(), payload: { tokens } });
    const phones = new Map((detokenized.json().results as Array<{ token: string; phone: string }>).map((r) => [r.token, r.phone]));
    out.push(...results.map((r) => (r.token ? phones.get(r.token)! : null)));
  }
  return out;
}

describe("libphonenumber's example numbers", () => {
  it('every valid example survives tokenize and detokenize unchanged, from E.164', async () => {
    const back = await roundTrip(examples.map((e) => ({ phone: e.e164 })));
    const failed = examples.filter((e, i) => back[i] !== e.e164).map((e) => e.e164);
    expect(failed.sort()).toEqual([...KNOWN_INVALID].sort());
  });

  it('every valid example survives tokenize and detokenize unchanged, from national form with its region', async () => {
    const geographic = examples.filter((e) => e.region !== '001' && !KNOWN_INVALID.has(e.e164));
    // Written as the people of that region write it: with the national prefix, or (for the few numbers dialled
    // without it) the national number alone.
    const withPrefix = await roundTrip(geographic.map((e) => ({ phone: `${e.nationalPrefix ?? ''}${e.national}`, country: e.region })));
    const misses = geographic.filter((e, i) => withPrefix[i] !== e.e164);
    const bare = await roundTrip(misses.map((e) => ({ phone: e.national, country: e.region })));
    expect(misses.filter((e, i) => bare[i] !== e.e164)).toEqual([]);
    expect(misses.length).toBeLessThan(10);
  });
});
