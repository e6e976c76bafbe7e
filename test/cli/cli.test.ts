import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    expect(res.code).toBe(78);
    expect(res.err).toContain('JWT_SECRET');
    expect(res.err).not.toContain('tooshort');
  });

  it('unknown commands exit 2 with the usage', async () => {
    const res = await run(['frobnicate'], {});
    expect(res.code).toBe(2);
    expect(res.err).toContain("unknown command 'frobnicate'");
    expect(res.err).toContain('phonevault --help');
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
      // Lines are written in blocks (src/logger.ts), yet a quiet vault's lines still reach stdout within moments.
      const quietSince = Date.now();
      while (!stdout.includes('"route":"/v1/detokenize"') && Date.now() - quietSince < 2_000) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(stdout).toContain('"route":"/v1/detokenize"');
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
    expect(res.code).toBe(78);
    expect(res.err).toContain('VAULT_MASTER_KEY: the key with id "default" is not the one this database was written with');
  });

  it('explains itself: --help on every command prints its usage and starts nothing', async () => {
    for (const argv of [['--help'], ['serve', '--help'], ['token', '--help'], ['audit', 'verify', '--help'], ['tenant', 'destroy', '--help'], ['keys', 'destroy', '--help']]) {
      const res = await run(argv, {});
      expect(res.code, argv.join(' ')).toBe(0);
      expect(res.out, argv.join(' ')).toMatch(/^Usage: phonevault/);
    }
    // dev --help, in a folder of its own: no data folder, no key written, no vault started.
    const cwd = mkdtempSync(join(tmpdir(), 'pv-help-'));
    const child = spawn(process.execPath, [BIN, 'dev', '--help'], { cwd, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(0);
    expect(stdout).toMatch(/^Usage: phonevault dev/);
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('names an unknown flag or a bad value and exits 2; tells a refused configuration apart (78)', async () => {
    for (const [argv, message] of [
      [['serve', '--frob'], "unknown option '--frob'"],
      [['serve', '--port', 'ninety'], "option '--port <port>' argument 'ninety' is invalid"],
      [['rewrap', '--batch-size', '0'], "argument '0' is invalid"],
      [['keys', 'destroy', '--tenant', 'acme'], "required option '--version <n>' not specified"],
      [['audit', 'prune'], "required option '--before <YYYY-MM>' not specified"],
      [['tenant', 'destroy'], "missing required argument 'tenant'"],
      [['token', '--tenant', 'acme', '--sub', 'crm', '--scope', 'x', '--ttl', 'forever'], "argument 'forever' is invalid"],
    ] as const) {
      const res = await run([...argv], baseEnv());
      expect(res.code, argv.join(' ')).toBe(2);
      expect(res.err, argv.join(' ')).toContain(message);
    }
    const refused = await run(['migrate'], { DATABASE_URL: 'mysql://nope' });
    expect(refused.code).toBe(78);
    expect(refused.err).toContain('configuration refused');
  });

  it('serve honours --port and --host over the environment', async () => {
    const own = await createTestDatabase();
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const env = { ...baseEnv(), DATABASE_URL: own.url, PORT: '1', LOG_LEVEL: 'info', MIGRATE_ON_START: 'true' };
    const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--host', '127.0.0.1'], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk) => {
          stdout += chunk;
          const match = /"url":"(http:\/\/[^"]+)"/.exec(stdout);
          if (match) resolve(match[1]!);
        });
        child.once('exit', () => reject(new Error('serve exited')));
      });
      expect(url).toBe(`http://127.0.0.1:${port}`);
    } finally {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
      for (const line of stdout.split('\n').filter(Boolean)) recordLogLine(line);
      await own.drop();
    }
  });

  it("token signs with the dev vault's own secret when JWT_SECRET is not set", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'pv-devsecret-'));
    const secret = randomBytes(48).toString('base64');
    expect((await run(['token', '--tenant', 'dev', '--sub', 'me', '--scope', 'tokenize'], { PHONEVAULT_DATA_DIR: join(dataDir, 'none') })).code).toBe(78);
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(join(dataDir, 'dev-secrets.json'), JSON.stringify({ masterKey: 'unused', jwtSecret: secret }));
    const res = await run(['token', '--tenant', 'dev', '--sub', 'me', '--scope', 'tokenize'], { PHONEVAULT_DATA_DIR: dataDir });
    expect(res.code).toBe(0);
    expect(createVerifier({ key: secret, algorithms: ['HS256'], allowedIss: 'phonevault-dev', allowedAud: 'phonevault-dev' })(res.out)).toMatchObject({ tenant: 'dev', sub: 'me' });
    expect(existsSync(join(dataDir, 'none'))).toBe(false);
  });
});
