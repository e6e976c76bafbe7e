// npm run bench:citus (issue 21): single tokenize and detokenize on one Postgres and on a Citus cluster (a
// coordinator and its workers, on this machine), in one run, one tenant and then 50 tenants; the vault is the
// same process either way, its tables distributed by `phonevault distribute` on the cluster. The cluster is the
// operator's: BENCH_CITUS_URL names its coordinator (an admin database there) and BENCH_CITUS_WORKERS its workers
// (host:port,…), every node with the citus extension available. Writes bench/results/citus-*.json.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import { withCpu } from './cpu.mjs';
import { createBenchDatabase, log, phone, seedTokens, startVault } from './harness.mjs';
import { wrkAvailable, wrkLoad } from './load.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const TENANTS = 50;
const SEEDED = 2000;
const coordinatorAdmin = process.env.BENCH_CITUS_URL;
const workers = (process.env.BENCH_CITUS_WORKERS ?? '').split(',').filter(Boolean);
if (!coordinatorAdmin || workers.length === 0) {
  log('bench:citus needs BENCH_CITUS_URL (the coordinator, e.g. postgres://postgres@127.0.0.1:9700/postgres) and BENCH_CITUS_WORKERS (e.g. 127.0.0.1:9701,127.0.0.1:9702)');
  process.exit(2);
}
if (!wrkAvailable()) throw new Error('bench:citus drives the vault with wrk: apt-get install wrk');
const bin = new URL('../bin/phonevault.js', import.meta.url).pathname;

async function sql(url, statements) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const statement of statements) await client.query(statement);
  } finally {
    await client.end();
  }
}
const at = (base, host, name) => {
  const url = new URL(base);
  if (host) url.host = host;
  url.pathname = `/${name}`;
  return url.toString();
};

/** A database on the cluster with the same environment as the plain one, migrated, then distributed. */
async function createCitusDatabase(plain) {
  const name = `phonevault_citus_${process.pid}`;
  await sql(coordinatorAdmin, ['SET citus.enable_create_database_propagation = on', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, `CREATE DATABASE ${name}`]);
  for (const worker of workers) await sql(at(coordinatorAdmin, worker, name), ['CREATE EXTENSION citus']);
  const coordinator = new URL(coordinatorAdmin);
  await sql(at(coordinatorAdmin, null, name), [
    'CREATE EXTENSION citus',
    `SELECT citus_set_coordinator_host('${coordinator.hostname}', ${coordinator.port || 5432})`,
    ...workers.map((worker) => `SELECT citus_add_node('${worker.split(':')[0]}', ${Number(worker.split(':')[1] ?? 5432)})`),
  ]);
  const env = { ...plain.env, DATABASE_URL: at(coordinatorAdmin, null, name) };
  for (const command of ['migrate', 'distribute']) execFileSync(process.execPath, [bin, command], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  return { env, drop: () => sql(coordinatorAdmin, ['SET citus.enable_create_database_propagation = on', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]) };
}

const results = {};
const fmt = (value) => (value === null || value === undefined ? '—' : value.toFixed(0));
async function measure(name, pid, options) {
  await wrkLoad({ connections: CONNECTIONS, ...options, durationMs: 1000 });
  const result = await withCpu(pid, () => wrkLoad({ connections: CONNECTIONS, durationMs: SECONDS * 1000, ...options }));
  results[name] = result;
  log(`  ${name.padEnd(40)} ${result.itemsPerSecond.toFixed(0).padStart(7)}/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  CPU µs/req ${fmt(result.processUsPerItem)} + Postgres ${fmt(result.postgresUsPerItem)}${result.errors ? `  errors ${result.errors}` : ''}`);
}

/** Single tokenize and detokenize, of one tenant and of TENANTS (a request's tenant by its JWT). */
async function scenarios(label, env, jwt) {
  const vault = await startVault(env);
  try {
    const tenants = Array.from({ length: TENANTS }, (_, i) => `tenant-${i}`);
    const one = { authorization: `Bearer ${jwt('tokenize detokenize', 'acme')}` };
    const many = tenants.map((tenant) => ({ authorization: `Bearer ${jwt('tokenize detokenize', tenant)}` }));
    const seeded = await seedTokens(vault.url, jwt('tokenize detokenize', 'acme'), SEEDED);
    const seededMany = [];
    for (let t = 0; t < TENANTS; t++) seededMany.push(await seedTokens(vault.url, jwt('tokenize detokenize', tenants[t]), SEEDED / TENANTS));
    const url = vault.url;
    await measure(`${label}: tokenize, 1 tenant`, vault.child.pid, { baseUrl: url, expectStatus: 201, makeRequest: (i) => ({ path: '/v1/tokenize', headers: one, body: { phone: phone(i) } }) });
    await measure(`${label}: detokenize, 1 tenant`, vault.child.pid, { baseUrl: url, expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers: one, body: { tokens: [seeded[i % SEEDED]] } }) });
    await measure(`${label}: tokenize with Idempotency-Key, 1 tenant`, vault.child.pid, { baseUrl: url, expectStatus: 201, uniqueHeader: 'Idempotency-Key', makeRequest: (i) => ({ path: '/v1/tokenize', headers: one, body: { phone: phone(i) } }) });
    await measure(`${label}: tokenize, ${TENANTS} tenants`, vault.child.pid, { baseUrl: url, expectStatus: 201, makeRequest: (i) => ({ path: '/v1/tokenize', headers: many[i % TENANTS], body: { phone: phone(i) } }) });
    await measure(`${label}: detokenize, ${TENANTS} tenants`, vault.child.pid, {
      baseUrl: url,
      expectStatus: 200,
      makeRequest: (i) => ({ path: '/v1/detokenize', headers: many[i % TENANTS], body: { tokens: [seededMany[i % TENANTS][Math.floor(i / TENANTS) % seededMany[i % TENANTS].length]] } }),
    });
  } finally {
    vault.child.kill('SIGTERM');
    await new Promise((resolve) => vault.child.once('exit', resolve));
  }
}

const plain = await createBenchDatabase('phonevault_citus_plain');
const citus = await createCitusDatabase(plain);
try {
  log(`phonevault bench:citus — ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), Node ${process.version}; Citus coordinator ${new URL(coordinatorAdmin).host}, workers ${workers.join(', ')}`);
  log(`load: wrk, 1 thread, ${CONNECTIONS} connections, ${SECONDS} s a scenario, on the same cores as the vault and every Postgres`);
  if (!process.env.BENCH_CITUS_ONLY) await scenarios('one Postgres', plain.env, plain.jwt);
  await scenarios('Citus', citus.env, plain.jwt);
  const dir = new URL('./results/', import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const file = `${dir}citus-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify({ machine: { cores: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, seconds: SECONDS, connections: CONNECTIONS, tenants: TENANTS, results }, null, 2));
  log(`wrote ${file}`);
} finally {
  await plain.drop();
  await citus.drop();
}
