import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { bearer, build, type TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';

// The draws of phone-shaped ids, steered: a value queued here is drawn before any random one, so a test can make
// a new token's id collide with one the tenant already holds (at 10^9 tokens, one draw in 10^4 does).
const forced: number[] = [];
vi.mock('node:crypto', async (original) => {
  const crypto = await original<typeof import('node:crypto')>();
  return { ...crypto, randomInt: (min: number, max?: number) => (forced.length > 0 ? forced.shift()! : max === undefined ? crypto.randomInt(min) : crypto.randomInt(min, max)) };
});

let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const tokenize = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { ...bearer({ tenant: 'acme', scope: 'tokenize' }), ...headers }, payload: body });
const batch = (body: Record<string, unknown>) => t.app.inject({ method: 'POST', url: '/v1/tokenize/batch', headers: bearer({ tenant: 'acme', scope: 'tokenize' }), payload: body });
const read = async (tokens: string[]) =>
  (await t.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant: 'acme', scope: 'detokenize' }), payload: { tokens } })).json().results.map((r: { phone?: string }) => r.phone);
const events = async () => Number((await t.testDb.owner.query<{ n: string }>("SELECT count(*) AS n FROM audit_events WHERE action = 'tokenize'")).rows[0]!.n);

describe('a phone-shaped id already taken', () => {
  it('is drawn again, the holder keeps its number, and the request is recorded once', async () => {
    forced.push(42);
    const held = (await tokenize({ phone: NUMBERS.us.e164, format: 'phone' })).json().token;
    expect(held).toBe('+280000000000042');
    const before = await events();
    forced.push(42, 42);
    const res = await tokenize({ phone: NUMBERS.gb.e164, format: 'phone' });
    expect(res.statusCode).toBe(201);
    expect(res.json().token).toMatch(/^\+28[0-9]{13}$/);
    expect(res.json().token).not.toBe(held);
    expect(await read([held, res.json().token])).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
    expect(await events()).toBe(before + 1);
  });

  it('in a batch, only the colliding items are drawn again, and every item gets its own token', async () => {
    forced.push(7);
    const held = (await tokenize({ phone: NUMBERS.de.e164, format: 'phone' })).json().token;
    const before = await events();
    // Items 0 and 2 draw the taken id; item 1 a fresh one.
    forced.push(7, 8, 7);
    const res = await batch({ format: 'phone', items: [{ phone: NUMBERS.us.e164 }, { phone: NUMBERS.gb.e164 }, { phone: NUMBERS.fr.e164 }] });
    const tokens = res.json().results.map((r: { token: string }) => r.token);
    expect(tokens[1]).toBe('+280000000000008');
    expect(new Set([held, ...tokens]).size).toBe(4);
    expect(await read([held, ...tokens])).toEqual([NUMBERS.de.e164, NUMBERS.us.e164, NUMBERS.gb.e164, NUMBERS.fr.e164]);
    expect(await events()).toBe(before + 1);
  });

  it('drawn twice within one statement (two fresh ids alike), is stored once and the other item drawn again', async () => {
    const before = await events();
    forced.push(11, 11);
    const res = await batch({ format: 'phone', items: [{ phone: NUMBERS.us.e164 }, { phone: NUMBERS.gb.e164 }] });
    const tokens = res.json().results.map((r: { token: string }) => r.token);
    expect(tokens[0]).toBe('+280000000000011');
    expect(tokens[1]).not.toBe(tokens[0]);
    expect(await read(tokens)).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
    // Across requests the insert coalesces, too: two callers drawing one id each get their own.
    forced.push(12, 12);
    const [a, b] = await Promise.all([tokenize({ phone: NUMBERS.de.e164, format: 'phone' }), tokenize({ phone: NUMBERS.fr.e164, format: 'phone' })]);
    expect(a.json().token).not.toBe(b.json().token);
    expect(await read([a.json().token, b.json().token])).toEqual([NUMBERS.de.e164, NUMBERS.fr.e164]);
    expect(await events()).toBe(before + 3);
  });

  it('for a deterministic token, is drawn again and the number still gets one token', async () => {
    forced.push(99);
    const held = (await tokenize({ phone: NUMBERS.us2.e164, format: 'phone' })).json().token;
    forced.push(99);
    const first = (await tokenize({ phone: NUMBERS.fr.e164, deterministic: true, format: 'phone' })).json().token;
    expect(first).not.toBe(held);
    expect((await tokenize({ phone: NUMBERS.fr.e164, deterministic: true, format: 'phone' })).json().token).toBe(first);
    expect(await read([held, first])).toEqual([NUMBERS.us2.e164, NUMBERS.fr.e164]);
  });

  it('in an idempotent request, is drawn again within its transaction', async () => {
    forced.push(5);
    const held = (await tokenize({ phone: NUMBERS.us.e164, format: 'phone' })).json().token;
    forced.push(5);
    const headers = { 'idempotency-key': 'collide-once' };
    const first = await tokenize({ phone: NUMBERS.gb.e164, format: 'phone' }, headers);
    const replay = await tokenize({ phone: NUMBERS.gb.e164, format: 'phone' }, headers);
    expect(first.statusCode).toBe(201);
    expect(first.json().token).not.toBe(held);
    expect(replay.json().token).toBe(first.json().token);
    expect(await read([held, first.json().token])).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
  });

  it('that keeps being drawn fails the request whole, storing nothing of it', async () => {
    forced.push(3);
    await tokenize({ phone: NUMBERS.us.e164, format: 'phone' });
    const rows = async () => Number((await t.testDb.owner.query<{ n: string }>('SELECT count(*) AS n FROM tokens')).rows[0]!.n);
    const before = await rows();
    forced.push(3, 3, 3, 3, 3);
    const res = await tokenize({ phone: NUMBERS.gb.e164, format: 'phone' });
    expect(res.statusCode).toBe(500);
    expect(res.json().code).toBe('internal_error');
    expect(await rows()).toBe(before);
  });
});
