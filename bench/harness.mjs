// What the bench and the soak share: a throwaway database, the vault started as it ships, a JWT, RSS readings.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSigner } from 'fast-jwt';
import pg from 'pg';

const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const bin = new URL('../bin/phonevault.js', import.meta.url).pathname;
// The image's own Node settings (Dockerfile), so that the figures are those of the vault as it ships.
export const VAULT_NODE_OPTIONS = /NODE_OPTIONS="([^"]+)"/.exec(readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8'))[1];

export const phone = (i) => `+1201555${String(i % 10_000).padStart(4, '0')}`;
export const log = (text) => process.stderr.write(`${text}\n`);

/** Runs one statement on the server's admin database (CREATE/DROP DATABASE). */
export async function admin(sql) {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function run(args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.resume();
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args[0]} exited ${code}`))));
  });
}

/**
 * A fresh database, migrated, with the environment a vault needs against it; drop() removes it. `kek` replaces
 * the env master key with another provider's variables (KEK_PROVIDER and its own).
 */
export async function createBenchDatabase(name, kek = null) {
  const dbName = `${name}_${process.pid}`;
  const url = new URL(ADMIN_URL);
  url.pathname = `/${dbName}`;
  await admin(`DROP DATABASE IF EXISTS ${dbName}`);
  await admin(`CREATE DATABASE ${dbName}`);
  const secret = randomBytes(48).toString('base64');
  const env = {
    DATABASE_URL: url.toString(),
    VAULT_MASTER_KEY: randomBytes(32).toString('base64'),
    JWT_SECRET: secret,
    JWT_ISSUER: 'bench',
    JWT_AUDIENCE: 'bench',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    RATE_LIMIT_TOKENIZE: '1000000000/1m',
    RATE_LIMIT_DETOKENIZE: '1000000000/1m',
    RATE_LIMIT_LOOKUP: '1000000000/1m',
    DETOKENIZE_ITEMS_LIMIT: '1000000000/1h',
  };
  if (kek) {
    delete env.VAULT_MASTER_KEY;
    Object.assign(env, kek);
  }
  await run(['migrate'], env);
  return {
    url: url.toString(),
    env,
    jwt: (scope = 'tokenize detokenize lookup', tenant = 'acme') => createSigner({ key: secret, algorithm: 'HS256', iss: 'bench', aud: 'bench', expiresIn: 6 * 3_600_000 })({ sub: 'bench', tenant, scope }),
    drop: () => admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`),
  };
}

/** Starts `phonevault serve` with the image's Node options; resolves once /readyz answers. */
export async function startVault(env, nodeArgs = []) {
  const started = performance.now();
  const child = spawn(process.execPath, [...nodeArgs, bin, 'serve'], { env: { ...process.env, ...env, NODE_OPTIONS: VAULT_NODE_OPTIONS }, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const onData = (chunk) => {
      out += chunk;
      const match = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (match) {
        child.stdout.off('data', onData);
        child.stdout.resume(); // keep draining the request log
        resolve(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.on('exit', (code) => reject(new Error(`vault exited ${code}`)));
  });
  for (;;) {
    const res = await fetch(`${url}/readyz`).catch(() => null);
    if (res?.ok) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { child, url, readyMs: performance.now() - started };
}

export function rssMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { current: Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) / 1024, peak: Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) / 1024 };
}

/** Seeds `count` tokens through the batch endpoint and returns them. */
export async function seedTokens(url, jwt, count) {
  const tokens = [];
  for (let start = 0; start < count; start += 1000) {
    const res = await fetch(`${url}/v1/tokenize/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
      body: JSON.stringify({ items: Array.from({ length: Math.min(1000, count - start) }, (_, k) => ({ phone: phone(start + k) })) }),
    });
    tokens.push(...(await res.json()).results.map((r) => r.token));
  }
  return tokens;
}
