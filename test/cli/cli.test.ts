import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { createVerifier } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { findLeaks, NUMBERS } from '../helpers/numbers.js';
import { recordLogLine } from '../helpers/log-sink.js';
import { createTestDatabase } from '../helpers/database.js';

const BIN = new URL('../../bin/phonevault.js', import.meta.url).pathname;

let database: Awaited<ReturnType<typeof createTestDatabase>>;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.drop();
});

const run = runCli;

const baseEnv = () => ({
  DATABASE_URL: database.url,
  VAULT_MASTER_KEY: randomBytes(32).toString('base64'),
  JWT_SECRET: randomBytes(48).toString('base64'),
  JWT_ISSUER: 'https://id.example',
  JWT_AUDIENCE: 'phonevault',
});

describe('phonevault CLI', () => {
  it('keygen prints a fresh 32-byte base64 key', async () => {
    const a = await run(['keygen'], {});
    const b = await run(['keygen'], {});
    expect(Buffer.from(a.out, 'base64')).toHaveLength(32);
    expect(a.out).not.toBe(b.out);
  });

  it('token mints a JWT the vault accepts, with the claims asked for', async () => {
    const env = baseEnv();
    const { code, out } = await run(['token', '--tenant', 'acme', '--sub', 'crm', '--scope', 'tokenize detokenize', '--ttl', '15m'], env);
    expect(code).toBe(0);
    const claims = createVerifier({ key: env.JWT_SECRET, algorithms: ['HS256'], allowedIss: env.JWT_ISSUER, allowedAud: env.JWT_AUDIENCE })(out);
    expect(claims).toMatchObject({ tenant: 'acme', sub: 'crm', scope: 'tokenize detokenize' });
    expect(claims.exp - claims.iat).toBe(900);
  });

  it('token explains what it needs', async () => {
    const res = await run(['token', '--tenant', 'acme'], baseEnv());
    expect(res.code).toBe(2);
    expect(res.err).toContain('--sub');
  });

  it('migrate applies once and is idempotent', async () => {
    const files = readdirSync(new URL('../../migrations/', import.meta.url)).filter((name) => name.endsWith('.sql')).sort();
    expect(files[0]).toBe('001_init.sql');
    expect((await run(['migrate'], baseEnv())).out).toBe(`applied ${files.join(', ')}`);
    expect((await run(['migrate'], baseEnv())).out).toBe('database is up to date');
  });

  it('serve refuses a weak configuration, naming the variable and never the value', async () => {
    const res = await run(['serve'], { ...baseEnv(), JWT_SECRET: 'tooshort' });
    expect(res.code).toBe(2);
    expect(res.err).toContain('JWT_SECRET');
    expect(res.err).not.toContain('tooshort');
  });

  it('unknown commands exit 2 with the usage', async () => {
    const res = await run(['frobnicate'], {});
    expect(res.code).toBe(2);
    expect(res.err).toContain('usage: phonevault');
  });

  // The whole path a user takes: migrate, serve, mint a token, tokenize and detokenize over HTTP, SIGTERM.
  it('serve runs the vault end to end and stops gracefully on SIGTERM', async () => {
    const env = { ...baseEnv(), PORT: '0', LOG_LEVEL: 'info' };
    const child = spawn(process.execPath, [BIN, 'serve'], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk) => {
        stdout += chunk;
        const match = /"url":"(http:\/\/[^"]+)"/.exec(stdout);
        if (match) resolve(match[1]!);
      });
      child.once('exit', () => reject(new Error(`serve exited: ${stderr}`)));
    });
    try {
      const minted = await run(['token', '--tenant', 'acme', '--sub', 'crm', '--scope', 'tokenize detokenize:masked'], env);
      const headers = { authorization: `Bearer ${minted.out}`, 'content-type': 'application/json' };
      const tokenized = await fetch(`${url}/v1/tokenize`, { method: 'POST', headers, body: JSON.stringify({ phone: NUMBERS.us.national, country: 'US' }) });
      expect(tokenized.status).toBe(201);
      const { token } = (await tokenized.json()) as { token: string };
      const detokenized = await fetch(`${url}/v1/detokenize`, { method: 'POST', headers, body: JSON.stringify({ tokens: [token] }) });
      expect(await detokenized.json()).toEqual({ results: [{ token, masked: '+1******0123', country: 'US' }] });
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    const exitCode = await new Promise((resolve) => child.once('exit', resolve));
    expect(exitCode).toBe(0);
    for (const line of stdout.split('\n').filter(Boolean)) recordLogLine(line);
    expect(stdout).toContain('"msg":"shutting down"');
    expect(findLeaks(stdout + stderr)).toEqual([]);
  });

  it('serve refuses a master key that is not the one the database was written with', async () => {
    const res = await run(['serve'], baseEnv());
    expect(res.code).toBe(2);
    expect(res.err).toContain('VAULT_MASTER_KEY: the key with id "default" is not the one this database was written with');
  });
});
