import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.js';
import { bearerToken, MAX_CREDENTIAL_LENGTH } from '../../src/http/auth.js';
import { AUDIENCE, build, ISSUER, JWT_SECRET, mintJwt, type TestApp } from '../helpers/build.js';
import { createTestDatabase } from '../helpers/database.js';
import { recordLogLine } from '../helpers/log-sink.js';
import { NUMBERS } from '../helpers/numbers.js';

// Issue 14, item 2: memory stays bounded under any flood of valid tokens.
let t: TestApp;
beforeAll(async () => {
  t = await build();
});
afterAll(async () => {
  await t.close();
});

const call = (authorization: string) =>
  t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization }, payload: { phone: NUMBERS.us.e164 } });

/** Every spelling of `Bearer`: 2^6 of them. */
const bearerSpellings = Array.from({ length: 64 }, (_, bits) => [...'Bearer'].map((c, i) => ((bits >> i) & 1 ? c.toUpperCase() : c.toLowerCase())).join(''));

/** The other base64url characters that decode to the same bytes as a final character, when the unused bits differ. */
function sameBytesOtherSpellings(part: string): string[] {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const bytes = Buffer.from(part, 'base64url');
  return [...alphabet].map((c) => part.slice(0, -1) + c).filter((spelled) => spelled !== part && Buffer.from(spelled, 'base64url').equals(bytes));
}

describe('the verified-identity cache', () => {
  it('takes one token in every spelling of Bearer as the one token', async () => {
    const token = mintJwt({ sub: 'spellings' });
    for (const scheme of bearerSpellings) expect(bearerToken(`${scheme} ${token}`)).toBe(token);
    for (const scheme of bearerSpellings.slice(0, 8)) expect((await call(`${scheme} ${token}`)).statusCode).toBe(201);
  });

  it('refuses a token whose base64url has non-zero unused bits, in any part (401 invalid_token)', async () => {
    const token = mintJwt({ sub: 'canonical' });
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const variants = [
      ...sameBytesOtherSpellings(signature).map((s) => `${header}.${payload}.${s}`),
      ...sameBytesOtherSpellings(payload).map((p) => `${header}.${p}.${signature}`),
      ...sameBytesOtherSpellings(header).map((h) => `${h}.${payload}.${signature}`),
      `${header}.${payload}.${signature}=`,
      `${header}.${payload}.${signature.replace(/-/g, '+')}`,
    ].filter((variant) => variant !== token);
    expect(variants.length).toBeGreaterThan(2);
    expect((await call(`Bearer ${token}`)).statusCode).toBe(201);
    for (const variant of variants) {
      const res = await call(`Bearer ${variant}`);
      expect(res.statusCode, variant.slice(-4)).toBe(401);
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
    }
  });

  it('refuses a credential longer than any identity provider issues, unread', async () => {
    const long = mintJwt({ sub: 'long', pad: 'x'.repeat(MAX_CREDENTIAL_LENGTH) });
    expect((await call(`Bearer ${long}`)).statusCode).toBe(401);
  });
});

describe('a flood of distinct valid tokens of the largest accepted size', () => {
  it('leaves the vault alive with its RSS under 200 MB, with the image’s NODE_OPTIONS', { timeout: 120_000 }, async () => {
    const database = await createTestDatabase();
    const masterKey = randomBytes(32).toString('base64');
    const env = { DATABASE_URL: database.url, VAULT_MASTER_KEY: masterKey, JWT_SECRET, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, PORT: '0', RATE_LIMIT_TOKENIZE: '1000000/1m', RATE_LIMIT_UNAUTHENTICATED: '1000000/1m' };
    expect(await main(['migrate'], env, () => {}, () => {})).toBe(0);
    const nodeOptions = /NODE_OPTIONS="([^"]+)"/.exec(readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8'))![1]!;
    const child = spawn(process.execPath, [new URL('../../bin/phonevault.js', import.meta.url).pathname, 'serve'], {
      env: { PATH: process.env.PATH, NODE_OPTIONS: nodeOptions, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.once('exit', () => reject(new Error('vault exited')));
        const started = Date.now();
        const poll = setInterval(() => {
          const match = /"url":"http:\/\/[^:]+:(\d+)"/.exec(output);
          if (match) {
            clearInterval(poll);
            resolve(Number(match[1]));
          } else if (Date.now() - started > 20_000) reject(new Error('vault did not start'));
        }, 20);
      });
      // Each token as large as accepted: the header at MAX_CREDENTIAL_LENGTH, all distinct, all valid, each its
      // own client, so that each holds a throttling window and a refusal row of its own as well as a cache entry.
      const sized = (i: number) => {
        const sub = `flood-${String(i).padStart(6, '0')}`;
        const bare = mintJwt({ sub, pad: '' });
        return mintJwt({ sub, pad: 'p'.repeat(Math.floor(((MAX_CREDENTIAL_LENGTH - 'Bearer '.length - bare.length) * 3) / 4) - 2) });
      };
      expect(`Bearer ${sized(0)}`.length).toBeLessThanOrEqual(MAX_CREDENTIAL_LENGTH);
      expect(`Bearer ${sized(0)}`.length).toBeGreaterThan(MAX_CREDENTIAL_LENGTH - 8);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
      const send = (token: string) =>
        new Promise<number>((resolve) => {
          const body = JSON.stringify({ phone: 'not a number' });
          const req = http.request({ host: '127.0.0.1', port, path: '/v1/tokenize', method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          });
          req.on('error', () => resolve(0));
          req.end(body);
        });
      const statuses = new Map<number, number>();
      const TOKENS = 12_000;
      for (let start = 0; start < TOKENS; start += 16) {
        const answers = await Promise.all(Array.from({ length: 16 }, (_, k) => send(sized(start + k))));
        for (const status of answers) statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      // Valid tokens: every answer is the invalid number's 400, none a 401, 5xx or dropped connection.
      expect(Object.fromEntries(statuses)).toEqual({ 400: TOKENS });
      // Then tokens as large as HTTP itself lets through (earlier releases cached each of their spellings): refused.
      const huge = (i: number) => mintJwt({ sub: 'flood', jti: String(i), pad: 'h'.repeat(11_000) });
      const refused = new Map<number, number>();
      for (let start = 0; start < 3_000; start += 16) {
        const answers = await Promise.all(Array.from({ length: 16 }, (_, k) => send(huge(start + k))));
        for (const status of answers) refused.set(status, (refused.get(status) ?? 0) + 1);
      }
      agent.destroy();
      expect(Object.fromEntries(refused)).toEqual({ 401: 3_008 });
      expect(child.exitCode).toBeNull();
      const peakMb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
      expect(peakMb).toBeLessThan(200);
      // Held per client and written early past their bound or at shutdown, no refusal went unrecorded.
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      const db = new pg.Client({ connectionString: database.url });
      await db.connect();
      const { rows } = await db.query<{ clients: number; items: number }>(`SELECT count(DISTINCT client)::int AS clients, sum(items)::int AS items FROM audit_events WHERE outcome = 'rejected' AND client LIKE 'flood-%'`);
      await db.end();
      expect(rows[0]).toEqual({ clients: TOKENS, items: TOKENS });
    } finally {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
      for (const line of output.split('\n').filter(Boolean)) recordLogLine(line);
      await database.drop();
    }
  });
});
