import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { recordLogLine } from '../helpers/log-sink.js';
import { NUMBERS } from '../helpers/numbers.js';

const BIN = new URL('../../bin/phonevault.js', import.meta.url).pathname;
const workDir = mkdtempSync(join(tmpdir(), 'pv-dev-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

/** Starts `phonevault dev` with no configuration at all and reads the shell lines it prints. */
async function startDev() {
  const child = spawn(process.execPath, [BIN, 'dev'], { cwd: workDir, env: { PATH: process.env.PATH, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  const exports = await new Promise<Record<string, string>>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (stdout.includes('PHONEVAULT_TOKEN_ADMIN=') && stdout.includes('# then:')) {
        resolve(Object.fromEntries([...stdout.matchAll(/^export (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!])));
      }
    });
    child.once('exit', (code) => reject(new Error(`dev exited with ${code}`)));
  });
  const stop = async () => {
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.once('exit', resolve));
    for (const line of stdout.split('\n').filter((l) => l.startsWith('{'))) recordLogLine(line);
    return code;
  };
  return { exports, stdout, stop };
}

describe('phonevault dev', () => {
  it('runs with zero set-up, prints usable tokens, keeps data across restarts', { timeout: 60_000 }, async () => {
    // The data folder exists already, made by hand with open modes (issue 14, item 11), and its name is a link to
    // it: dev mode closes the folder itself, whatever name leads there.
    const dataDir = join(workDir, 'vault-data');
    symlinkSync(dataDir, join(workDir, '.phonevault'));
    mkdirSync(join(dataDir, 'left-over'), { recursive: true });
    writeFileSync(join(dataDir, 'left-over', 'notes.txt'), 'x');
    for (const path of [dataDir, join(dataDir, 'left-over')]) chmodSync(path, 0o777);
    chmodSync(join(dataDir, 'left-over', 'notes.txt'), 0o666);
    const first = await startDev();
    const { PHONEVAULT_URL: url, PHONEVAULT_TOKEN: all, PHONEVAULT_TOKEN_DETOKENIZE_MASKED: masked } = first.exports;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(first.stdout).toContain('NOT FOR PRODUCTION');
    const tokenized = await fetch(`${url}/v1/tokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${all}`, 'content-type': 'application/json' },
      body: JSON.stringify({ phone: NUMBERS.gb.e164 }),
    });
    expect(tokenized.status).toBe(201);
    const { token } = (await tokenized.json()) as { token: string };
    const maskedRes = await fetch(`${url}/v1/detokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${masked}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tokens: [token] }),
    });
    expect(((await maskedRes.json()) as { results: unknown[] }).results[0]).toEqual({ token, masked: '+44******3456', country: 'GB' });
    // A second dev process on the same data folder would corrupt the embedded database: it is refused.
    const second = spawn(process.execPath, [BIN, 'dev'], { cwd: workDir, env: { PATH: process.env.PATH, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let secondErr = '';
    second.stderr.on('data', (chunk) => (secondErr += chunk));
    expect(await new Promise((resolve) => second.once('exit', resolve))).toBe(78);
    expect(secondErr).toContain('another phonevault dev');
    expect(await first.stop()).toBe(0);

    // Keys and an unencrypted database live there: 0700 for every folder, 0600 for every file.
    const modes: Array<[string, number, boolean]> = [];
    const walk = (path: string) => {
      const stat = statSync(path);
      modes.push([path, stat.mode & 0o777, stat.isDirectory()]);
      if (stat.isDirectory()) for (const entry of readdirSync(path)) walk(join(path, entry));
    };
    walk(dataDir);
    expect(modes.length).toBeGreaterThan(20);
    expect(modes.filter(([, mode, directory]) => mode !== (directory ? 0o700 : 0o600))).toEqual([]);

    const restarted = await startDev();
    const again = await fetch(`${restarted.exports.PHONEVAULT_URL}/v1/detokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${restarted.exports.PHONEVAULT_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tokens: [token] }),
    });
    expect(((await again.json()) as { results: unknown[] }).results[0]).toEqual({ token, phone: NUMBERS.gb.e164, country: 'GB' });
    expect(await restarted.stop()).toBe(0);
  });

});
