// Where a scenario's CPU went, read from /proc (Linux only; elsewhere every reading is null): the CPU time of one
// process (the vault, the echo server, or the bench itself for the raw baselines), of every Postgres process
// together, and how busy the whole machine was. Divided by the items served, it says what an item costs each
// side — the figure that bounds a ratio on a machine whose cores are shared by all of them.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const ticksPerSecond = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process, in seconds; null when it cannot be read. */
export function processCpu(pid) {
  try {
    // The command name may hold spaces or parentheses: the fields after it start past the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return null;
  }
}

/** CPU seconds of every process named postgres, by pid. */
function postgresCpu() {
  const byPid = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('postgres')) continue;
    } catch {
      continue;
    }
    const cpu = processCpu(pid);
    if (cpu !== null) byPid.set(pid, cpu);
  }
  return byPid;
}

const cores = (() => {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n').filter((line) => /^cpu\d+ /.test(line)).length || 1;
  } catch {
    return 1;
  }
})();

/** Busy and total jiffies of all cores together. */
function machineTicks() {
  const [, ...values] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = values.map(Number);
  return { busy: user + nice + system + irq + softirq + steal, all: user + nice + system + idle + iowait + irq + softirq + steal };
}

function reading(pid) {
  try {
    return { process: processCpu(pid), postgres: postgresCpu(), machine: machineTicks() };
  } catch {
    return null;
  }
}

/**
 * Runs `load` (resolving to a result with requests, requestsPerSecond and itemsPerSecond) and adds what an item
 * cost: `processUsPerItem` (the process `pid`), `postgresUsPerItem` (every Postgres process, one started meanwhile
 * with all of its CPU; one that exited meanwhile as of its last reading, at most 200 ms old) and `machineBusyPct` (100 per
 * core). Each is null where /proc cannot tell.
 */
export async function withCpu(pid, load) {
  const before = reading(pid);
  // Backends that end before the load does (an importer's, a script's) are read while they live: each keeps its
  // last reading.
  const seen = new Map();
  const sample = () => {
    for (const [backend, cpu] of postgresCpu()) seen.set(backend, cpu);
  };
  const sampler = before ? setInterval(sample, 200) : null;
  let result;
  try {
    result = await load();
  } finally {
    if (sampler) clearInterval(sampler);
  }
  const after = reading(pid);
  if (after) {
    for (const [backend, cpu] of after.postgres) seen.set(backend, cpu);
    after.postgres = seen;
  }
  const cost = { processUsPerItem: null, postgresUsPerItem: null, machineBusyPct: null };
  if (before && after && result.requests > 0) {
    // Items served: those counted by the load generator, not its rate times the time between readings (which
    // also spans its start and its exit).
    const items = (result.requests * result.itemsPerSecond) / result.requestsPerSecond;
    if (before.process !== null && after.process !== null) cost.processUsPerItem = ((after.process - before.process) * 1e6) / items;
    let postgres = 0;
    for (const [backend, cpu] of after.postgres) postgres += cpu - (before.postgres.get(backend) ?? 0);
    cost.postgresUsPerItem = (postgres * 1e6) / items;
    const all = after.machine.all - before.machine.all;
    if (all > 0) cost.machineBusyPct = (100 * cores * (after.machine.busy - before.machine.busy)) / all;
  }
  return { ...result, ...cost };
}
