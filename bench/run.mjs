// npm run bench: the vault against its hardware's own limits, measured in one run. Baselines (raw pg from Node,
// bare Fastify) run on the same machine at the same concurrency, and every vault figure is quoted as a ratio to
// one, beside the CPU each item cost the server (or the raw client) and Postgres (bench/cpu.mjs). Writes the
// figures to bench/results/. Settings: BENCH_DATABASE_URL, BENCH_SECONDS, BENCH_LARGE_ROWS, and
// BENCH_ROUNDS (each round measures every baseline and then the vault; ratios are the medians of the rounds').
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import { withCpu } from './cpu.mjs';
import { benchImport } from './import.mjs';
import { createBenchDatabase, log, phone, rssMb, seedTokens, startVault, VAULT_NODE_OPTIONS } from './harness.mjs';
import { fnLoad, median, httpLoad as nodeHttpLoad, wrkAvailable, wrkLoad } from './load.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LARGE_ROWS = Number(process.env.BENCH_LARGE_ROWS ?? 1_000_000);
// Issue 18: rows `phonevault import` reads from a table (0: not measured).
const IMPORT_ROWS = Number(process.env.BENCH_IMPORT_ROWS ?? 1_000_000);
const CONNECTIONS = 50;
const BATCH_CONNECTIONS = 4;
const BATCH = 1000;
const durationMs = SECONDS * 1000;
const LOADGEN = process.env.BENCH_LOADGEN ?? (wrkAvailable() ? 'wrk' : 'node');
const httpLoad = LOADGEN === 'wrk' ? wrkLoad : nodeHttpLoad;

const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 1));
const rounds = []; // per round: scenario name → result
let importRun = null; // issue 18's import figures (bench/import.mjs)
let current = {};
const results = {};
/**
 * Before every scenario, vault or baseline: vacuum what the previous ones wrote and checkpoint, so that none
 * starts with another's dead rows and dirty pages to clear. (Without it, in two runs the first vault scenario of
 * the first round had a p99 of 100–120 ms, against 20–45 ms in later rounds; with it, 58 ms in one run: it
 * helps, and the machine's own noise does the rest.)
 */
const settle = async () => {
  await pool.query('VACUUM (ANALYZE) bench_raw, tokens, audit_events');
  await pool.query('CHECKPOINT');
};
/** The raw baselines run in this process: its CPU is the client's. */
const rawLoad = async (options) => {
  await settle();
  return withCpu(process.pid, () => fnLoad(options));
};
/**
 * Runs a scenario for a second first, unmeasured, so that every figure is of a warmed-up (JIT-compiled) process;
 * `pid` is the server's (the vault's or the echo's), whose CPU is measured.
 */
const warm = async (pid, options) => {
  await settle();
  await httpLoad({ ...options, durationMs: 1000 });
  return withCpu(pid, () => httpLoad(options));
};
const note = (name, result) => {
  current[name] = result;
  log(`  ${name.padEnd(30)} ${result.itemsPerSecond.toFixed(0).padStart(9)} items/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  CPU µs/item ${us(result.processUsPerItem)} + Postgres ${us(result.postgresUsPerItem)}, machine ${pct(result.machineBusyPct)}${result.errors ? `  errors ${result.errors}` : ''}`);
};
const us = (value) => (value === null || value === undefined ? '—' : value.toFixed(1));
const pct = (value) => (value === null || value === undefined ? '—' : `${value.toFixed(0)}%`);

const database = await createBenchDatabase('phonevault_bench');
const dbUrl = database.url;
let vault;
let echo;
let pool;
try {
  const env = database.env;
  log(`phonevault bench — ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`);
  log(`vault NODE_OPTIONS (from the Dockerfile): ${VAULT_NODE_OPTIONS}`);
  log(`load generator: ${LOADGEN === 'wrk' ? 'wrk (1 thread)' : 'Node http (install wrk for a lighter one)'}, on the same cores as the vault and Postgres; ${SECONDS} s a scenario, ${ROUNDS} round(s)`);

  echo = spawn(process.execPath, [new URL('./echo-server.mjs', import.meta.url).pathname], { stdio: ['ignore', 'pipe', 'inherit'] });
  const echoUrl = (await new Promise((resolve) => echo.stdout.once('data', resolve))).toString().trim();
  pool = new pg.Pool({ connectionString: dbUrl, max: CONNECTIONS });
  await pool.query('CREATE TABLE bench_raw (LIKE tokens INCLUDING ALL)');
  const row = () => ['bench', randomBytes(16), 1, randomBytes(49), randomBytes(32), false, 'US', 'mobile'];
  const insertOne = 'INSERT INTO bench_raw (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, country, line_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)';
  const unnest = `INSERT INTO bench_raw (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, country, line_type)
    SELECT 'bench', * FROM unnest($1::bytea[], $2::int[], $3::bytea[], $4::bytea[], $5::bool[], $6::text[], $7::text[])`;
  vault = await startVault(env);
  results.readyMs = vault.readyMs;
  log(`  vault ready in ${vault.readyMs.toFixed(0)} ms`);
  const jwt = database.jwt();
  const headers = { authorization: `Bearer ${jwt}` };
  const seeded = await seedTokens(vault.url, jwt, 10_000);
  const madeKey = await fetch(`${vault.url}/v1/api-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${database.jwt('admin tokenize detokenize')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench-key', scopes: ['tokenize', 'detokenize'] }),
  });
  if (madeKey.status !== 201) throw new Error(`making the bench API key answered ${madeKey.status}`);
  const keyHeaders = { authorization: `Bearer ${(await madeKey.json()).key}` };

  // Each round measures every baseline and then the vault, so that a ratio compares figures taken minutes
  // apart at most; with several rounds, the ratios reported are the medians of the rounds' ratios.
  for (let round = 1; round <= ROUNDS; round++) {
    current = {};
    if (ROUNDS > 1) log(`round ${round} of ${ROUNDS}`);
    note('baseline fastify echo', await warm(echo.pid, { baseUrl: echoUrl, connections: CONNECTIONS, durationMs, expectStatus: 200, makeRequest: (i) => ({ path: '/echo', body: { phone: phone(i) } }) }));
    note('baseline raw INSERT', await rawLoad({ concurrency: CONNECTIONS, durationMs, run: () => pool.query(insertOne, row()) }));
    const rawIds = (await pool.query('SELECT token_id FROM bench_raw LIMIT 10000')).rows.map((r) => r.token_id);
    note('baseline raw PK SELECT', await rawLoad({
      concurrency: CONNECTIONS,
      durationMs,
      run: (i) => pool.query({ name: 'pk', text: 'SELECT token_id, key_version, envelope, country FROM bench_raw WHERE tenant_id = $1 AND token_id = $2', values: ['bench', rawIds[i % rawIds.length]] }),
    }));
    note('baseline raw unnest INSERT 1000', await rawLoad({
      concurrency: BATCH_CONNECTIONS,
      durationMs,
      items: BATCH,
      run: () => {
        const rows = Array.from({ length: BATCH }, row);
        // Columns 1..7 of the row shape (the tenant is the constant in the statement).
        return pool.query(unnest, [1, 2, 3, 4, 5, 6, 7].map((column) => rows.map((r) => r[column])));
      },
    }));
    note('baseline raw SELECT 1000', await rawLoad({
      concurrency: BATCH_CONNECTIONS,
      durationMs,
      items: BATCH,
      run: (i) => pool.query({ name: 'many', text: 'SELECT token_id, key_version, envelope, country FROM bench_raw WHERE tenant_id = $1 AND token_id = ANY($2::bytea[])', values: ['bench', Array.from({ length: BATCH }, (_, k) => rawIds[(i * BATCH + k) % rawIds.length])] }),
    }));

    note('vault detokenize @10k rows', await warm(vault.child.pid, { baseUrl: vault.url, connections: CONNECTIONS, durationMs, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers, body: { tokens: [seeded[(i * 7919) % seeded.length]] } }) }));
    note('vault tokenize', await warm(vault.child.pid, { baseUrl: vault.url, connections: CONNECTIONS, durationMs, expectStatus: 201, makeRequest: (i) => ({ path: '/v1/tokenize', headers, body: { phone: phone(i) } }) }));
    // Issue 15's figures: an idempotent tokenize (a fresh key a request) and calls with an API key, beside the plain
    // JWT calls of the same round.
    note('vault tokenize idempotent', await warm(vault.child.pid, { baseUrl: vault.url, connections: CONNECTIONS, durationMs, expectStatus: 201, uniqueHeader: 'idempotency-key', makeRequest: (i) => ({ path: '/v1/tokenize', headers: { ...headers, 'idempotency-key': randomUUID() }, body: { phone: phone(i) } }) }));
    note('vault tokenize (API key)', await warm(vault.child.pid, { baseUrl: vault.url, connections: CONNECTIONS, durationMs, expectStatus: 201, makeRequest: (i) => ({ path: '/v1/tokenize', headers: keyHeaders, body: { phone: phone(i) } }) }));
    note('vault detokenize (API key)', await warm(vault.child.pid, { baseUrl: vault.url, connections: CONNECTIONS, durationMs, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers: keyHeaders, body: { tokens: [seeded[(i * 7919) % seeded.length]] } }) }));
    note('vault batch tokenize 1000', await warm(vault.child.pid, { baseUrl: vault.url, connections: BATCH_CONNECTIONS, durationMs, items: BATCH, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/tokenize/batch', headers, body: { items: Array.from({ length: BATCH }, (_, k) => ({ phone: phone(i * BATCH + k) })) } }) }));
    note('vault batch detokenize 1000', await warm(vault.child.pid, { baseUrl: vault.url, connections: BATCH_CONNECTIONS, durationMs, items: BATCH, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers, body: { tokens: Array.from({ length: BATCH }, (_, k) => seeded[(i * BATCH + k) % seeded.length]) } }) }));
    rounds.push(current);
  }

  if (IMPORT_ROWS > 0) {
    importRun = await benchImport({ database, vaultUrl: vault.url, jwt, rows: IMPORT_ROWS, vaultPid: vault.child.pid });
  }

  const { n } = (await pool.query('SELECT count(*)::int AS n FROM tokens')).rows[0];
  if (LARGE_ROWS > n) {
    log(`  filling the tokens table from ${n} to ${LARGE_ROWS} rows…`);
    await pool.query(`INSERT INTO tokens (tenant_id, token_id, key_version, envelope, fingerprint, deterministic, country, line_type)
      SELECT 'filler-' || (g % 100), decode(md5(g::text || random()::text), 'hex'), 1, decode(repeat('00', 49), 'hex'),
             sha256(g::text::bytea), false, 'US', 'mobile'
      FROM generate_series(1, $1) g`, [LARGE_ROWS - n]);
    await pool.query('VACUUM ANALYZE tokens');
  }
  results.largeRows = Math.max(LARGE_ROWS, n);
  // The large table against the small one, measured back to back (the latter again, so that the pair is close).
  current = {};
  note('vault detokenize again @10k rows', await warm(vault.child.pid, { baseUrl: vault.url, connections: CONNECTIONS, durationMs, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers, body: { tokens: [seeded[(i * 7919) % seeded.length]] } }) }));
  note(`vault detokenize @${(results.largeRows / 1e6).toFixed(1)}M rows`, await warm(vault.child.pid, { baseUrl: vault.url, connections: CONNECTIONS, durationMs, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers, body: { tokens: [seeded[(i * 7919) % seeded.length]] } }) }));
  results.large = current;
  results.peakRssMb = rssMb(vault.child.pid).peak;
} finally {
  vault?.child.kill('SIGTERM');
  echo?.kill('SIGTERM');
  await pool?.end();
  await new Promise((resolve) => setTimeout(resolve, 300));
  await database.drop();
}

// Per scenario, the round with the median throughput.
for (const name of Object.keys(rounds[0])) {
  const byRate = rounds.map((round) => round[name]).sort((x, y) => x.itemsPerSecond - y.itemsPerSecond);
  results[name] = byRate[Math.floor((byRate.length - 1) / 2)];
}
Object.assign(results, results.large);
delete results.large;
const largeName = `vault detokenize @${(results.largeRows / 1e6).toFixed(1)}M rows`;
const perRound = (vault, baseline) => median(rounds.map((round) => round[vault].itemsPerSecond / round[baseline].itemsPerSecond));
const ratios = [
  ['single tokenize / raw INSERT', perRound('vault tokenize', 'baseline raw INSERT'), 1.5],
  ['single detokenize / raw PK SELECT', perRound('vault detokenize @10k rows', 'baseline raw PK SELECT'), 1.0],
  ['batch tokenize / raw unnest INSERT', perRound('vault batch tokenize 1000', 'baseline raw unnest INSERT 1000'), 0.7],
  ['batch detokenize / raw SELECT 1000', perRound('vault batch detokenize 1000', 'baseline raw SELECT 1000'), 0.7],
  [`detokenize ${(results.largeRows / 1e6).toFixed(1)}M rows / 10k rows`, results[largeName].itemsPerSecond / results['vault detokenize again @10k rows'].itemsPerSecond, 0.8],
  ['single tokenize / fastify echo', perRound('vault tokenize', 'baseline fastify echo'), null],
  ['single detokenize / fastify echo', perRound('vault detokenize @10k rows', 'baseline fastify echo'), null],
];
const lines = [
  '',
  `| scenario | items/s | p50 ms | p99 ms | CPU µs/item: server (client for raw) | Postgres | machine busy |`,
  `|---|---:|---:|---:|---:|---:|---:|`,
  ...Object.entries(results)
    .filter(([, v]) => typeof v === 'object')
    .map(([name, v]) => `| ${name} | ${v.itemsPerSecond.toFixed(0)} | ${v.p50Ms.toFixed(2)} | ${v.p99Ms.toFixed(2)} | ${us(v.processUsPerItem)} | ${us(v.postgresUsPerItem)} | ${pct(v.machineBusyPct)} |`),
  '',
  `| ratio${ROUNDS > 1 ? ` (median of ${ROUNDS} rounds)` : ''} | measured | target |`,
  `|---|---:|---:|`,
  ...ratios.map(([name, value, target]) => `| ${name} | ${value.toFixed(2)}× | ${target === null ? '—' : `≥ ${target}×`} |`),
  '',
  ...(importRun ? importLines(importRun, results['vault batch tokenize 1000']) : []),
  `vault peak RSS ${results.peakRssMb.toFixed(0)} MB (target ≤ 200); ready ${results.readyMs.toFixed(0)} ms after spawn (target ≤ 1500)`,
  `single tokenize p99 ${results['vault tokenize'].p99Ms.toFixed(1)} ms at ${CONNECTIONS} connections (target ≤ 30)`,
  `load generator: ${LOADGEN}; it shares the same ${os.cpus().length} cores with the vault and Postgres, so absolute figures are lower bounds`,
  `CPU µs/item: the server process's CPU time (the vault's, all its threads; the echo's) or, for the raw baselines, the bench's own (the pg client), and all Postgres processes', each per item served; machine busy: all cores, ${os.cpus().length * 100}% = every core busy (the load generator is in it)`,
];
function importLines(run, batch) {
  const { http, import: cli, resume } = run;
  return [
    `| import of ${run.rows.toLocaleString('en-US')} rows from a table | rows/s | seconds | CPU µs/row: importer (the vault for HTTP) | Postgres | machine busy |`,
    `|---|---:|---:|---:|---:|---:|`,
    `| phonevault import | ${cli.itemsPerSecond.toFixed(0)} | ${cli.seconds.toFixed(1)} | ${us(cli.importUsPerItem)} | ${us(cli.postgresUsPerItem)} | ${pct(cli.machineBusyPct)} |`,
    ...[['before', http.before], ['after', http.after]].map(
      ([when, run]) => `| the same over HTTP, ${when} the import (pages of ${1000}, batch tokenize, 4 in flight, tokens written back) | ${run.itemsPerSecond.toFixed(0)} | ${run.seconds.toFixed(1)} | ${us(run.vaultUsPerItem)} | ${us(run.postgresUsPerItem)} | ${pct(run.machineBusyPct)} |`,
    ),
    '',
    `| import ratio | measured | target |`,
    `|---|---:|---:|`,
    `| import / the same migration over HTTP (the mean of the runs before and after) | ${(cli.itemsPerSecond / http.itemsPerSecond).toFixed(2)}× | ≥ 1.0× |`,
    `| import / batch tokenize over HTTP (${SECONDS} s, small table, no source table) | ${(cli.itemsPerSecond / batch.itemsPerSecond).toFixed(2)}× | — |`,
    '',
    `import killed (SIGKILL) at ${resume.killedAt.toLocaleString('en-US')} of ${resume.rows.toLocaleString('en-US')} rows: run again, its first batch committed ${resume.firstBatchMs === null ? '—' : `${resume.firstBatchMs.toFixed(0)} ms`} after the start, done in ${resume.totalSeconds.toFixed(1)} s (exit ${resume.exit}); tokens made ${resume.tokensMade.toLocaleString('en-US')} (${resume.duplicates} more than rows)`,
    '',
  ];
}
process.stdout.write(`${lines.join('\n')}\n`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ loadGenerator: LOADGEN, rounds, machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGiB: os.totalmem() / 2 ** 30, node: process.version }, seconds: SECONDS, connections: CONNECTIONS, batchConnections: BATCH_CONNECTIONS, results, importRun, ratios: Object.fromEntries(ratios.map(([name, value, target]) => [name, { value, target }])) }, null, 2));
process.stdout.write(`figures written to ${file.pathname}\n`);
