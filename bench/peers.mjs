// npm run bench:peers (issue 19): the vault against what a user could run instead, in one run, on one machine,
// through one load generator at one concurrency — the do-it-yourself service (bench/diy-server.mjs), OpenBao's
// transit engine and Databunker where they can be had here — and the CPU a request costs the vault against a
// bare Fastify echo with the same JWT check. Peers come from `go install`; where the module proxy refuses one, a
// binary built elsewhere on this machine can be named (PEER_OPENBAO_BIN, PEER_DATABUNKER_BIN), and a peer with
// neither is reported with what stopped it. Writes bench/results/peers-*.json. BENCH_SECONDS sets a scenario.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { withCpu } from './cpu.mjs';
import { admin, createBenchDatabase, log, phone, seedTokens, startVault, VAULT_NODE_OPTIONS } from './harness.mjs';
import { median, wrkAvailable, wrkLoad } from './load.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const CONNECTIONS = 50;
const SEEDED = 2000;
const durationMs = SECONDS * 1000;
// wrk only: one light load generator for every server, and a record of its own a request where a peer needs one.
if (!wrkAvailable()) throw new Error('bench:peers drives every server with wrk: apt-get install wrk');
const httpLoad = wrkLoad;
const here = (file) => new URL(file, import.meta.url).pathname;
const lookupPhone = (i) => `+1202555${String(i).padStart(4, '0')}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Go peers: module@version for `go install`, and the variable naming a binary built here when it is refused.
const GO_PEERS = {
  openbao: { module: 'github.com/openbao/openbao/v2@v2.6.2', binary: 'bao', variable: 'PEER_OPENBAO_BIN' },
  databunker: { module: 'github.com/securitybunker/databunker/src@v0.0.0-20260728093649-1d96827d1cd6', binary: 'src', variable: 'PEER_DATABUNKER_BIN' },
};

/** The peer's binary, or why there is none: `go install` first, then the binary named by its variable. */
function goPeer({ module, binary, variable }) {
  const bin = join(execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim(), 'bin', binary);
  let refused;
  try {
    execFileSync('go', ['install', module], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: { ...process.env, GOFLAGS: '' } });
    return { bin, how: `go install ${module}` };
  } catch (error) {
    refused = `go install ${module}: ${String(error.stderr ?? error.message).trim().split('\n').at(-2)?.trim() ?? 'failed'}`;
  }
  const given = process.env[variable];
  if (given && existsSync(given)) return { bin: given, how: `${variable}=${given} (${refused})` };
  return { missing: refused };
}

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

async function json(url, { method = 'POST', headers = {}, body } = {}) {
  const res = await fetch(url, { method, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${new URL(url).pathname} answered ${res.status}`);
  return text ? JSON.parse(text) : {};
}

async function untilAnswers(url, ok = (res) => res.status < 500) {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(url).catch(() => null);
    if (res && ok(res)) return;
    await sleep(50);
  }
  throw new Error(`${url} never answered`);
}

function startNode(script, env) {
  const child = spawn(process.execPath, [here(script)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (line) => resolve({ child, url: line.toString().trim() }));
    child.on('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  });
}

/** OpenBao as its production docs set it up: PostgreSQL storage, initialised, unsealed, a policy-scoped token. */
async function startOpenBao(bin, databaseUrl) {
  const port = await freePort();
  const dir = mkdtempSync(join(os.tmpdir(), 'pv-bao-'));
  const url = `http://127.0.0.1:${port}`;
  writeFileSync(join(dir, 'bao.hcl'), [
    `storage "postgresql" {\n  connection_url = "${databaseUrl}?sslmode=disable"\n}`,
    // Loopback only, as every peer here; a deployment would terminate TLS here or in front.
    `listener "tcp" {\n  address = "127.0.0.1:${port}"\n  tls_disable = true\n}`,
    `api_addr = "${url}"`,
    'log_level = "warn"',
  ].join('\n'));
  const child = spawn(bin, ['server', `-config=${join(dir, 'bao.hcl')}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  await untilAnswers(`${url}/v1/sys/health`, (res) => res.status !== 0);
  const init = await json(`${url}/v1/sys/init`, { method: 'PUT', body: { secret_shares: 1, secret_threshold: 1 } });
  await json(`${url}/v1/sys/unseal`, { method: 'PUT', body: { key: init.keys_base64[0] } });
  await untilAnswers(`${url}/v1/sys/health`, (res) => res.status === 200 || res.status === 429);
  const root = { 'x-vault-token': init.root_token };
  await json(`${url}/v1/sys/mounts/transit`, { headers: root, body: { type: 'transit' } });
  await json(`${url}/v1/transit/keys/phones`, { headers: root, body: { type: 'aes256-gcm96' } });
  await json(`${url}/v1/sys/policies/acl/phones`, { method: 'PUT', headers: root, body: { policy: 'path "transit/encrypt/phones" { capabilities = ["update"] }\npath "transit/decrypt/phones" { capabilities = ["update"] }' } });
  const { auth } = await json(`${url}/v1/auth/token/create`, { headers: root, body: { policies: ['phones'], ttl: '6h' } });
  return { child, url, headers: { 'x-vault-token': auth.client_token } };
}

/** Databunker on the same PostgreSQL, initialised by its own -init, started with its master key and root token. */
async function startDatabunker(bin, databaseUrl) {
  const { hostname, port: pgPort, pathname } = new URL(databaseUrl);
  const port = await freePort();
  const dir = mkdtempSync(join(os.tmpdir(), 'pv-databunker-'));
  writeFileSync(join(dir, 'databunker.yaml'), `server:\n  host: "127.0.0.1"\n  port: ${port}\ngeneric:\n  create_user_without_access_token: false\n`);
  const env = { ...process.env, PGSQL_HOST: hostname, PGSQL_PORT: pgPort || '5432', PGSQL_USER_NAME: 'postgres', PGSQL_USER_PASS: '' };
  const dbName = pathname.slice(1);
  // -init prints the root token and master key through Go's log, on standard error.
  const { stdout, stderr } = spawnSync(bin, ['-init', '-db', dbName, '-conf', join(dir, 'databunker.yaml')], { env, encoding: 'utf8' });
  const init = `${stdout}${stderr}`;
  const rootToken = /API Root token:\s+(\S+)/.exec(init)?.[1];
  const masterKey = /Master key:\s+(\S+)/.exec(init)?.[1];
  if (!rootToken || !masterKey) throw new Error('databunker -init printed no root token or master key');
  const child = spawn(bin, ['-start', '-db', dbName, '-conf', join(dir, 'databunker.yaml')], { env: { ...env, DATABUNKER_MASTERKEY: masterKey, DATABUNKER_ROOTTOKEN: rootToken }, stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  await untilAnswers(`${url}/status`, (res) => res.status === 200);
  return { child, url, headers: { 'x-bunker-token': rootToken } };
}

const results = {};
const missing = {};
const note = (name, result) => {
  log(`  ${name.padEnd(34)} ${result.itemsPerSecond.toFixed(0).padStart(7)}/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  CPU µs/req ${fmt(result.processUsPerItem)} + Postgres ${fmt(result.postgresUsPerItem)}${result.errors ? `  errors ${result.errors}` : ''}`);
};
const fmt = (value) => (value === null || value === undefined ? '—' : value.toFixed(0));
/** A second unmeasured, then the measured run with the CPU of `pid` (the server) and of Postgres. */
const measure = async (pid, options) => {
  await httpLoad({ connections: CONNECTIONS, ...options, durationMs: 1000 });
  return withCpu(pid, () => httpLoad({ connections: CONNECTIONS, durationMs, ...options }));
};
// Every path is measured once a round, the rounds in turn; a path's row is its round of median throughput, and a
// ratio the median of the rounds' ratios (as bench/run.mjs does): the machine's speed drifts by half within
// minutes here, and paths measured one after the other once each took that drift for a difference between servers.
const ECHO = 'echo (Fastify + JWT check)';
const scenarios = [];
const scenario = (name, pid, options) => scenarios.push({ name, pid, options });
const runs = {};
/** The median over the rounds of `ratio(round)`, where `round(name)` is that path's result in the round. */
const perRound = (ratio) => median(Array.from({ length: ROUNDS }, (_, k) => ratio((name) => runs[name][k])));

const database = await createBenchDatabase('phonevault_peers');
const children = [];
const dropLater = [];
try {
  log(`phonevault bench:peers — ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), Node ${process.version}; vault NODE_OPTIONS ${VAULT_NODE_OPTIONS}`);
  log(`load: wrk, 1 thread, ${CONNECTIONS} connections, ${SECONDS} s a scenario, ${ROUNDS} rounds (medians), on the same cores as every server and Postgres`);
  const { env } = database;
  const jwtEnv = { JWT_SECRET: env.JWT_SECRET, JWT_ISSUER: env.JWT_ISSUER, JWT_AUDIENCE: env.JWT_AUDIENCE };
  const jwt = database.jwt();
  const bearer = { authorization: `Bearer ${jwt}` };

  const vault = await startVault(env);
  children.push(vault.child);
  const diy = await startNode('./diy-server.mjs', { ...jwtEnv, DATABASE_URL: database.url });
  children.push(diy.child);
  const echo = await startNode('./diy-server.mjs', { ...jwtEnv, ECHO: '1' });
  children.push(echo.child);

  scenario(ECHO, echo.child.pid, { baseUrl: echo.url, expectStatus: 200, makeRequest: (i) => ({ path: '/echo', headers: bearer, body: { phone: phone(i) } }) });

  const vaultTokens = await seedTokens(vault.url, jwt, SEEDED);
  scenario('phonevault tokenize', vault.child.pid, { baseUrl: vault.url, expectStatus: 201, makeRequest: (i) => ({ path: '/v1/tokenize', headers: bearer, body: { phone: phone(i) } }) });
  scenario('phonevault detokenize', vault.child.pid, { baseUrl: vault.url, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers: bearer, body: { tokens: [vaultTokens[i % SEEDED]] } }) });
  // Lookup on numbers of their own, one token each, as Databunker's lookup finds one record.
  for (let i = 0; i < SEEDED; i++) await json(`${vault.url}/v1/tokenize`, { headers: bearer, body: { phone: lookupPhone(i), deterministic: true } });
  scenario('phonevault lookup by phone', vault.child.pid, { baseUrl: vault.url, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/lookup', headers: bearer, body: { phone: lookupPhone(i % SEEDED) } }) });

  scenario('do-it-yourself tokenize', diy.child.pid, { baseUrl: diy.url, expectStatus: 201, makeRequest: (i) => ({ path: '/tokenize', headers: bearer, body: { phone: phone(i) } }) });
  const diyTokens = [];
  for (let i = 0; i < SEEDED; i++) diyTokens.push((await json(`${diy.url}/tokenize`, { headers: bearer, body: { phone: phone(i) } })).token);
  scenario('do-it-yourself detokenize', diy.child.pid, { baseUrl: diy.url, expectStatus: 200, makeRequest: (i) => ({ path: '/detokenize', headers: bearer, body: { token: diyTokens[i % SEEDED] } }) });

  const bao = goPeer(GO_PEERS.openbao);
  if (bao.missing) missing.openbao = bao.missing;
  else {
    log(`  OpenBao: ${bao.how}`);
    const peer = await startOpenBao(bao.bin, database.url);
    children.push(peer.child);
    const plaintext = (i) => Buffer.from(phone(i)).toString('base64');
    scenario('OpenBao transit encrypt', peer.child.pid, { baseUrl: peer.url, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/transit/encrypt/phones', headers: peer.headers, body: { plaintext: plaintext(i) } }) });
    const ciphertexts = [];
    for (let i = 0; i < SEEDED; i++) ciphertexts.push((await json(`${peer.url}/v1/transit/encrypt/phones`, { headers: peer.headers, body: { plaintext: plaintext(i) } })).data.ciphertext);
    scenario('OpenBao transit decrypt', peer.child.pid, { baseUrl: peer.url, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/transit/decrypt/phones', headers: peer.headers, body: { ciphertext: ciphertexts[i % SEEDED] } }) });
  }

  const bunker = goPeer(GO_PEERS.databunker);
  if (bunker.missing) missing.databunker = bunker.missing;
  else {
    log(`  Databunker: ${bunker.how}`);
    // Databunker keeps its own database on the same server, made here and dropped at the end.
    const name = `databunker_${process.pid}`;
    await admin(`DROP DATABASE IF EXISTS ${name}`);
    await admin(`CREATE DATABASE ${name}`);
    dropLater.push(name);
    // A number of its own a record (Databunker refuses a second record of a number): the run's digit, then wrk's count.
    let createRun = 0;
    const peer = await startDatabunker(bunker.bin, database.url.replace(/\/[^/]+$/, `/${name}`));
    children.push(peer.child);
    scenario('Databunker create record', peer.child.pid, { baseUrl: peer.url, expectStatus: 200, counter: '@N', makeRequest: (i) => ({ path: '/v1/user', headers: peer.headers, body: { phone: `+4420${i === 0 ? ++createRun : createRun}@N` } }) });
    const tokens = [];
    for (let i = 0; i < SEEDED; i++) tokens.push((await json(`${peer.url}/v1/user`, { headers: peer.headers, body: { phone: lookupPhone(i) } })).token);
    scenario('Databunker read by token', peer.child.pid, { baseUrl: peer.url, expectStatus: 200, makeRequest: (i) => ({ method: 'GET', path: `/v1/user/token/${tokens[i % SEEDED]}`, headers: peer.headers }) });
    scenario('Databunker lookup by phone', peer.child.pid, { baseUrl: peer.url, expectStatus: 200, makeRequest: (i) => ({ method: 'GET', path: `/v1/user/phone/${encodeURIComponent(lookupPhone(i % SEEDED))}`, headers: peer.headers }) });
  }

  for (let round = 0; round < ROUNDS; round++) {
    log(`  round ${round + 1} of ${ROUNDS}`);
    for (const { name, pid, options } of scenarios) {
      const result = await measure(pid, options);
      (runs[name] ??= []).push(result);
      note(name, result);
    }
  }
  for (const [name, all] of Object.entries(runs)) results[name] = [...all].sort((x, y) => x.itemsPerSecond - y.itemsPerSecond)[Math.floor((all.length - 1) / 2)];
} finally {
  for (const child of children) child.kill('SIGTERM');
  await sleep(500);
  for (const name of dropLater) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await database.drop();
}

// Each peer's path against the vault's that does the same: the vault's throughput over the peer's.
const pairs = [
  ['tokenize (create)', 'phonevault tokenize', ['do-it-yourself tokenize', 1.5], ['OpenBao transit encrypt', 1.0], ['Databunker create record', 1.0]],
  ['detokenize (read by token)', 'phonevault detokenize', ['do-it-yourself detokenize', 1.5], ['OpenBao transit decrypt', 1.0], ['Databunker read by token', 1.0]],
  ['lookup by phone', 'phonevault lookup by phone', ['Databunker lookup by phone', 1.0]],
];
const lines = [
  '',
  '| server and path | req/s | p50 ms | p99 ms | server CPU µs/req | Postgres CPU µs/req |',
  '|---|---:|---:|---:|---:|---:|',
  ...Object.entries(results).map(([name, r]) => `| ${name} | ${r.itemsPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${fmt(r.processUsPerItem)} | ${fmt(r.postgresUsPerItem)} |`),
  '',
  '| path | against | vault ÷ peer, throughput | target |',
  '|---|---|---:|---:|',
  ...pairs.flatMap(([path, mine, ...others]) =>
    others.filter(([peer]) => results[peer]).map(([peer, target]) => `| ${path} | ${peer} | ${perRound((round) => round(mine).itemsPerSecond / round(peer).itemsPerSecond).toFixed(2)}× | ≥ ${target}× |`),
  ),
  '',
  '| the vault\'s CPU a request, against the echo\'s (Fastify + the same JWT check) | vault process | vault + Postgres | target (process) |',
  '|---|---:|---:|---:|',
  ...[['single detokenize', 'phonevault detokenize', 2.5], ['single tokenize', 'phonevault tokenize', 3.5]].map(([path, name, target]) => {
    const alone = perRound((round) => round(name).processUsPerItem / round(ECHO).processUsPerItem);
    const withPostgres = perRound((round) => (round(name).processUsPerItem + round(name).postgresUsPerItem) / round(ECHO).processUsPerItem);
    return `| ${path} | ${alone.toFixed(2)}× | ${withPostgres.toFixed(2)}× | ≤ ${target}× |`;
  }),
  '',
  ...Object.entries(missing).map(([peer, why]) => `${peer}: not measured — ${why}`),
];
process.stdout.write(`${lines.join('\n')}\n`);
mkdirSync(here('./results/'), { recursive: true });
const file = here(`./results/peers-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify({ machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version }, seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, results, runs, missing }, null, 2));
process.stdout.write(`figures written to ${file}\n`);
