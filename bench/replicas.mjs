// npm run bench:replicas — one vault instance against two on the same Postgres and Redis, in one run: single
// tokenize and single detokenize at 50 connections in all, split evenly across the instances, with the CPU each
// item cost the vaults and Postgres. The instances run as processes (the image's NODE_OPTIONS) rather than
// containers, so that Docker's proxy is not what is measured. Settings: BENCH_SECONDS, BENCH_REDIS_URL.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { processCpu, withCpu } from './cpu.mjs';
import { createBenchDatabase, log, phone, seedTokens, startVault } from './harness.mjs';
import { httpLoad } from './load.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 50;
const database = await createBenchDatabase('phonevault_replicas');
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
// Shared budgets need Redis; BENCH_REDIS_URL= (empty) runs each instance on its own counters, for comparison.
const env = { ...database.env, ...(redisUrl ? { REDIS_URL: redisUrl } : {}) };
const vaults = [];
const results = {};
try {
  log(`phonevault replicas bench — ${os.cpus().length} cores, Node ${process.version}; ${SECONDS} s a scenario, ${CONNECTIONS} connections in all`);
  vaults.push(await startVault(env), await startVault(env));
  const jwt = database.jwt();
  const headers = { authorization: `Bearer ${jwt}` };
  const seeded = await seedTokens(vaults[0].url, jwt, 10_000);
  const scenarios = {
    tokenize: { expectStatus: 201, makeRequest: (i) => ({ path: '/v1/tokenize', headers, body: { phone: phone(i) } }) },
    detokenize: { expectStatus: 200, makeRequest: (i) => ({ path: '/v1/detokenize', headers, body: { tokens: [seeded[(i * 7919) % seeded.length]] } }) },
  };
  for (const [name, scenario] of Object.entries(scenarios)) {
    for (const count of [1, 2]) {
      const used = vaults.slice(0, count);
      const load = (durationMs) => Promise.all(used.map((vault) => httpLoad({ ...scenario, baseUrl: vault.url, connections: CONNECTIONS / count, durationMs })));
      await load(1000);
      const measured = await withCpuAll(used.map((vault) => vault.child.pid), () => load(SECONDS * 1000));
      results[`${name}, ${count} instance${count > 1 ? 's' : ''}`] = measured;
      log(`  ${name.padEnd(10)} ${count} instance(s): ${measured.itemsPerSecond.toFixed(0)} items/s, p99 ${measured.p99Ms.toFixed(1)} ms, vault CPU ${measured.vaultUsPerItem.toFixed(1)} µs/item, Postgres ${measured.postgresUsPerItem?.toFixed(1) ?? '—'}, machine ${measured.machineBusyPct?.toFixed(0) ?? '—'}%${measured.errors ? `, errors ${measured.errors}` : ''}`);
    }
  }
} finally {
  for (const vault of vaults) vault.child.kill('SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, 300));
  await database.drop();
}

/** The loads' summed throughput, their worst p99, and the CPU per item of all the given vault processes. */
async function withCpuAll(pids, load) {
  const [first, ...rest] = pids;
  let own = 0;
  const others = rest.map((pid) => ({ pid, before: processCpu(pid) }));
  const measured = await withCpu(first, async () => {
    const answers = await load();
    const requests = answers.reduce((sum, a) => sum + a.requests, 0);
    const itemsPerSecond = answers.reduce((sum, a) => sum + a.itemsPerSecond, 0);
    return { requests, itemsPerSecond, requestsPerSecond: itemsPerSecond, p50Ms: Math.max(...answers.map((a) => a.p50Ms)), p99Ms: Math.max(...answers.map((a) => a.p99Ms)), errors: answers.reduce((sum, a) => sum + a.errors, 0) };
  });
  for (const other of others) own += processCpu(other.pid) - other.before;
  const items = measured.requests;
  return { ...measured, vaultUsPerItem: (measured.processUsPerItem ?? 0) + (own * 1e6) / items };
}

const lines = [
  '',
  '| scenario | items/s | p50 ms | p99 ms | vault CPU µs/item (all instances) | Postgres µs/item | machine busy |',
  '|---|---:|---:|---:|---:|---:|---:|',
  ...Object.entries(results).map(([name, r]) => `| ${name} | ${r.itemsPerSecond.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.vaultUsPerItem.toFixed(1)} | ${r.postgresUsPerItem?.toFixed(1) ?? '—'} | ${r.machineBusyPct?.toFixed(0) ?? '—'}% |`),
];
process.stdout.write(`${lines.join('\n')}\n`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/replicas-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version }, seconds: SECONDS, connections: CONNECTIONS, results }, null, 2));
process.stdout.write(`figures written to ${file.pathname}\n`);
