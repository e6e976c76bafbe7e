// npm run bench:kek — what each key-encryption-key provider costs, in one run: env (in process), pkcs11 on
// SoftHSM2, awskms on local-kms. A provider is called only when a data key is made or first needed by an
// instance, so the figures are start-up, a new tenant's first tokenize (its keys made and wrapped), a restarted
// instance's first read of a tenant (its keys unwrapped), each beside the same call once cached, and steady
// detokenize, which must not differ between providers. Settings: BENCH_SECONDS, BENCH_TENANTS.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { withCpu } from './cpu.mjs';
import { createBenchDatabase, log, phone, startVault } from './harness.mjs';
import { httpLoad, percentile } from './load.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const TENANTS = Number(process.env.BENCH_TENANTS ?? 100);
const bin = new URL('../bin/phonevault.js', import.meta.url).pathname;
const scratch = mkdtempSync(join(os.tmpdir(), 'pv-bench-kek-'));

/** A SoftHSM2 token of its own, and the KEK made on it by `phonevault kek create`. */
function softHsm() {
  const module = '/usr/lib/softhsm/libsofthsm2.so';
  if (!existsSync(module)) return null;
  mkdirSync(join(scratch, 'tokens'));
  writeFileSync(join(scratch, 'softhsm2.conf'), `directories.tokendir = ${join(scratch, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = join(scratch, 'softhsm2.conf');
  const pin = randomBytes(6).toString('hex');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--so-pin', randomBytes(6).toString('hex'), '--pin', pin], { stdio: 'ignore' });
  const env = { KEK_PROVIDER: 'pkcs11', PKCS11_MODULE: module, PKCS11_TOKEN_LABEL: 'bench', PKCS11_PIN: pin, PKCS11_KEY_LABEL: 'kek' };
  execFileSync(process.execPath, [bin, 'kek', 'create'], { env: { ...process.env, ...env }, stdio: 'ignore' });
  return { env, stop: () => {} };
}

/** local-kms (installed by `go install`, as .ci/run does) on a port of its own, seeded with one key. */
async function localKms() {
  const gobin = (() => {
    try {
      return join(execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim().split(':')[0], 'bin', 'local-kms');
    } catch {
      return null;
    }
  })();
  const binary = process.env.LOCAL_KMS ?? gobin;
  if (!binary || !existsSync(binary)) return null;
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const keyId = randomUUID();
  writeFileSync(join(scratch, 'seed.yaml'), `Keys:\n  Symmetric:\n    Aes:\n      - Metadata: { KeyId: ${keyId}, Origin: AWS_KMS }\n        BackingKeys: [ ${randomBytes(32).toString('hex')} ]\n`);
  const child = spawn(binary, [], { env: { PORT: String(port), KMS_DATA_PATH: join(scratch, 'kms'), KMS_SEED_PATH: join(scratch, 'seed.yaml') }, stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => createConnection(port, '127.0.0.1').once('connect', function () { this.destroy(); resolve(true); }).once('error', () => resolve(false)));
    if (up) break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIABENCH', AWS_SECRET_ACCESS_KEY: randomBytes(30).toString('base64'), AWS_EC2_METADATA_DISABLED: 'true' });
  return { env: { KEK_PROVIDER: 'awskms', AWS_KMS_KEY_ID: keyId, AWS_REGION: 'eu-west-2', AWS_ENDPOINT_URL_KMS: `http://127.0.0.1:${port}` }, stop: () => child.kill('SIGKILL') };
}

async function post(url, jwt, path, body) {
  const started = performance.now();
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(`${path} answered ${res.status} ${json.code}`);
  return { ms: performance.now() - started, json };
}

const stats = (values) => {
  const sorted = Float64Array.from(values).sort();
  return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
};

async function measure(name, kek) {
  const database = await createBenchDatabase('phonevault_kek', kek);
  let vault;
  try {
    vault = await startVault(database.env);
    const readyMs = vault.readyMs;
    const tenants = Array.from({ length: TENANTS }, (_, i) => `bench${i}`);
    const jwts = tenants.map((tenant) => database.jwt('tokenize detokenize', tenant));
    // One at a time: each is a new tenant's first call (its data and fingerprint keys made and wrapped), then its second.
    const first = [];
    const again = [];
    const tokens = [];
    for (const [i, jwt] of jwts.entries()) {
      const made = await post(vault.url, jwt, '/v1/tokenize', { phone: phone(i) });
      first.push(made.ms);
      tokens.push(made.json.token);
      again.push((await post(vault.url, jwt, '/v1/tokenize', { phone: phone(i + 1) })).ms);
    }
    vault.child.kill('SIGTERM');
    await new Promise((resolve) => vault.child.once('exit', resolve));
    // A new instance: each tenant's first read unwraps its key, the second finds it cached.
    vault = await startVault(database.env);
    const coldRead = [];
    const warmRead = [];
    for (const [i, jwt] of jwts.entries()) {
      coldRead.push((await post(vault.url, jwt, '/v1/detokenize', { tokens: [tokens[i]] })).ms);
      warmRead.push((await post(vault.url, jwt, '/v1/detokenize', { tokens: [tokens[i]] })).ms);
    }
    // One tenant, as in npm run bench's single detokenize: every key it needs is cached by now.
    const steadyOptions = { baseUrl: vault.url, connections: 50, expectStatus: 200, makeRequest: () => ({ path: '/v1/detokenize', headers: { authorization: `Bearer ${jwts[0]}` }, body: { tokens: [tokens[0]] } }) };
    await httpLoad({ ...steadyOptions, durationMs: 1000 });
    const steady = await withCpu(vault.child.pid, () => httpLoad({ ...steadyOptions, durationMs: SECONDS * 1000 }));
    const result = { readyMs, newTenant: stats(first), cachedTokenize: stats(again), coldRead: stats(coldRead), cachedRead: stats(warmRead), steady };
    log(`  ${name.padEnd(22)} ready ${readyMs.toFixed(0)} ms; new tenant p50 ${result.newTenant.p50Ms.toFixed(2)} ms (cached ${result.cachedTokenize.p50Ms.toFixed(2)}); cold read p50 ${result.coldRead.p50Ms.toFixed(2)} ms (cached ${result.cachedRead.p50Ms.toFixed(2)}); steady detokenize ${steady.itemsPerSecond.toFixed(0)}/s, ${steady.processUsPerItem?.toFixed(1) ?? '—'} µs CPU/item${steady.errors ? `, errors ${steady.errors}` : ''}`);
    return result;
  } finally {
    vault?.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await database.drop();
  }
}

const results = {};
const stops = [];
try {
  log(`phonevault KEK bench — ${os.cpus().length} cores, Node ${process.version}; ${TENANTS} tenants, ${SECONDS} s steady`);
  results.env = await measure('env', null);
  const hsm = softHsm();
  if (hsm) results['pkcs11 (SoftHSM2)'] = await measure('pkcs11 (SoftHSM2)', hsm.env);
  else log('  pkcs11: skipped, SoftHSM2 is not installed (apt-get install softhsm2)');
  const kms = await localKms();
  if (kms) {
    stops.push(kms.stop);
    results['awskms (local-kms)'] = await measure('awskms (local-kms)', kms.env);
  } else log('  awskms: skipped, local-kms is not installed (go install github.com/nsmithuk/local-kms@…)');
} finally {
  for (const stop of stops) stop();
  rmSync(scratch, { recursive: true, force: true });
}

const ms = (value) => value.toFixed(2);
const lines = [
  '',
  '| provider | ready ms | new tenant p50 / p99 ms | cached tokenize p50 | cold read p50 / p99 ms | cached read p50 | steady detokenize /s | CPU µs/item |',
  '|---|---:|---:|---:|---:|---:|---:|---:|',
  ...Object.entries(results).map(([name, r]) => `| ${name} | ${r.readyMs.toFixed(0)} | ${ms(r.newTenant.p50Ms)} / ${ms(r.newTenant.p99Ms)} | ${ms(r.cachedTokenize.p50Ms)} | ${ms(r.coldRead.p50Ms)} / ${ms(r.coldRead.p99Ms)} | ${ms(r.cachedRead.p50Ms)} | ${r.steady.itemsPerSecond.toFixed(0)} | ${r.steady.processUsPerItem?.toFixed(1) ?? '—'} |`),
];
process.stdout.write(`${lines.join('\n')}\n`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/kek-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version }, tenants: TENANTS, seconds: SECONDS, results }, null, 2));
process.stdout.write(`figures written to ${file.pathname}\n`);
