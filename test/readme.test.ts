import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createTestDatabase } from './helpers/database.js';
import { recordLogLine } from './helpers/log-sink.js';
import { createVaultDatabase } from './helpers/vault-database.js';

// The README's walkthrough, run as written against a dev vault, so that the README cannot drift from the code.
const ROOT = new URL('..', import.meta.url).pathname;
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const dataDir = mkdtempSync(join(tmpdir(), 'pv-readme-'));
let dev: ReturnType<typeof spawn>;
let banner = '';

beforeAll(async () => {
  dev = spawn(process.execPath, ['bin/phonevault.js', 'dev', '--port', '0', '--data-dir', dataDir], { cwd: ROOT, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    dev.stdout!.on('data', (chunk) => {
      banner += chunk;
      if (banner.includes('# then:')) resolve();
    });
    dev.once('exit', (code) => reject(new Error(`dev exited ${code}`)));
  });
}, 60_000);
afterAll(async () => {
  dev.kill('SIGTERM');
  await new Promise((resolve) => dev.once('exit', resolve));
  for (const line of banner.split('\n').filter((l) => l.startsWith('{'))) recordLogLine(line);
  rmSync(dataDir, { recursive: true, force: true });
});

/** The ```sh blocks of one section. */
function blocks(section: string): string[] {
  const start = readme.indexOf(`## ${section}`);
  const end = readme.indexOf('\n## ', start + 1);
  return [...readme.slice(start, end).matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
}

interface Step {
  command: string;
  expected: string | null;
}

/** Commands (continuation lines joined) and, when a `# {…}` line follows one, the answer it should print. */
function steps(block: string): Step[] {
  const out: Step[] = [];
  const lines = block.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const text = line.replace(/^#\s?/, '');
      if (/^[{[]/.test(text) && out.length > 0 && out.at(-1)!.expected === null) out.at(-1)!.expected = text;
      continue;
    }
    let command = line;
    while (command.endsWith('\\')) command = `${command}\n${lines[++i]}`;
    out.push({ command, expected: null });
  }
  return out;
}

/** `…` in an expected answer stands for anything. */
const matches = (actual: string, expected: string) =>
  new RegExp(`^${expected.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`).test(actual.trim());

describe('the README walkthrough', () => {
  it('runs verbatim in a second shell after the dev vault starts, answering what it says', { timeout: 90_000 }, () => {
    const exports = banner.split('\n').filter((line) => line.startsWith('export '));
    expect(exports.map((line) => line.split('=')[0])).toContain('export PHONEVAULT_TOKEN');
    const all = blocks('Walkthrough with curl').flatMap(steps);
    expect(all.filter((step) => step.expected).length).toBeGreaterThanOrEqual(6);
    // One shell, as a user's: the banner's lines pasted, then every command, each answer marked off.
    const script = ['set -euo pipefail', ...exports, `export PHONEVAULT_DATA_DIR=${dataDir}`, ...all.map((step, i) => `echo "@@step ${i}"\n${step.command}`)].join('\n');
    const shell = spawnSync('bash', ['-c', script], { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME }, encoding: 'utf8', timeout: 80_000 });
    expect(shell.stderr, shell.stderr).toBe('');
    expect(shell.status, shell.stdout).toBe(0);
    const outputs = shell.stdout.split(/^@@step \d+\n/m).slice(1);
    expect(outputs).toHaveLength(all.length);
    all.forEach((step, i) => {
      if (step.expected) expect(matches(outputs[i]!, step.expected), `${step.command}\nanswered ${outputs[i]}`).toBe(true);
    });
  });
});

describe('the README migration', () => {
  const masterKey = randomBytes(32).toString('base64');
  const jwtSecret = randomBytes(48).toString('base64');
  let vaultDb: Awaited<ReturnType<typeof createVaultDatabase>>;
  let appDb: Awaited<ReturnType<typeof createTestDatabase>>;
  let serve: ReturnType<typeof spawn>;
  let url = '';
  const env = () => ({
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: vaultDb.url,
    VAULT_MASTER_KEY: masterKey,
    JWT_SECRET: jwtSecret,
    JWT_ISSUER: 'https://id.example',
    JWT_AUDIENCE: 'phonevault',
  });

  beforeAll(async () => {
    vaultDb = await createVaultDatabase(masterKey);
    appDb = await createTestDatabase();
    serve = spawn(process.execPath, ['bin/phonevault.js', 'serve', '--host', '127.0.0.1', '--port', '0'], { cwd: ROOT, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    url = await new Promise<string>((resolve, reject) => {
      serve.stdout!.on('data', (chunk) => {
        log += chunk;
        for (const line of log.split('\n')) if (line.includes('"phonevault listening"')) resolve(JSON.parse(line).url);
      });
      serve.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    });
    serve.stdout!.on('data', (chunk) => String(chunk).split('\n').filter((l) => l.startsWith('{')).forEach(recordLogLine));
    for (const line of log.split('\n').filter((l) => l.startsWith('{'))) recordLogLine(line);
  }, 120_000);
  afterAll(async () => {
    serve?.kill('SIGTERM');
    await new Promise((resolve) => serve?.once('exit', resolve));
    await vaultDb?.drop();
    await appDb?.drop();
  });

  it('runs verbatim against two databases and a vault: tokens in place, verified, plaintext dropped', { timeout: 90_000 }, async () => {
    const all = blocks('Migrating an existing database').flatMap(steps);
    expect(all.length).toBeGreaterThanOrEqual(6);
    const script = ['set -euo pipefail', `export APP_DATABASE_URL=${appDb.url}`, `export PHONEVAULT_URL=${url}`, ...all.map((step, i) => `echo "@@step ${i}"\n${step.command}`)].join('\n');
    const shell = spawnSync('bash', ['-c', script], { cwd: ROOT, env: env(), encoding: 'utf8', timeout: 80_000 });
    expect(shell.status, shell.stderr).toBe(0);
    for (const line of shell.stderr.split('\n')) recordLogLine(JSON.stringify({ readmeStderr: line }));
    expect(shell.stderr).toContain('import: done: 3 rows read, 2 tokenized, 0 invalid, 1 skipped');
    const outputs = shell.stdout.split(/^@@step \d+\n/m).slice(1);
    all.forEach((step, i) => {
      if (step.expected) expect(matches(outputs[i]!, step.expected), `${step.command}\nanswered ${outputs[i]}`).toBe(true);
    });
    expect(outputs.some((out) => out.trim() === '0')).toBe(true);
    // What is left: tokens only, each reading back as the number it replaced.
    const check = spawnSync('psql', ['-tA', appDb.url, '-c', 'SELECT id, phone_token FROM customers ORDER BY id', '-c', "SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'phone'"], { encoding: 'utf8' });
    const [ann, bob, cy, phoneColumns] = check.stdout.trim().split('\n');
    expect(ann).toMatch(/^1\|tok_/);
    expect(bob).toMatch(/^2\|tok_/);
    expect(cy).toBe('3|');
    expect(phoneColumns).toBe('0');
  });
});
