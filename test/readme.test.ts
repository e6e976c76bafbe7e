import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordLogLine } from './helpers/log-sink.js';

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
