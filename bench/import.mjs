// Issue 18's figures, for bench/run.mjs: `phonevault import` of a table of numbers (rows a second, the CPU it and
// Postgres spent), against the same migration done as a team would without it — a script reading the table a
// page at a time, sending each page to POST /v1/tokenize/batch (4 in flight) and writing the tokens back — and the
// time an import killed (SIGKILL) halfway takes to continue.
import { spawn } from 'node:child_process';
import pg from 'pg';
import { processCpu, withCpu } from './cpu.mjs';
import { log } from './harness.mjs';

const bin = new URL('../bin/phonevault.js', import.meta.url).pathname;
const PAGE = 1000;
const IN_FLIGHT = 4;

async function sourceTable(pool, name, rows) {
  await pool.query(`CREATE TABLE ${name} (id bigint PRIMARY KEY, phone text NOT NULL, token text)`);
  await pool.query(`INSERT INTO ${name} SELECT g, '+1201555' || lpad((g % 10000)::text, 4, '0'), NULL FROM generate_series(1, $1) g`, [rows]);
  await pool.query(`VACUUM ANALYZE ${name}`);
}

/** The import command as an operator runs it, its CPU read from /proc until it exits. */
function runImport(env, args, onStart = () => {}) {
  const started = performance.now();
  const child = spawn(process.execPath, [bin, 'import', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  let cpu = 0;
  const sampler = setInterval(() => (cpu = processCpu(child.pid) ?? cpu), 50);
  onStart(child);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearInterval(sampler);
      resolve({ code, signal, seconds: (performance.now() - started) / 1000, cpuSeconds: cpu, stderr });
    });
  });
}

/** What a team would write without `import`: pages of the table through the batch endpoint, 4 in flight. */
async function overHttp(pool, vaultUrl, jwt, table, rows) {
  let next = 0;
  const worker = async () => {
    // Pages are claimed before any await (ids run 1..rows), so that workers never take the same one.
    for (let from = next; from < rows; from = next) {
      next += PAGE;
      const { rows: page } = await pool.query(`SELECT id, phone FROM ${table} WHERE id > $1 AND id <= $2 AND token IS NULL ORDER BY id`, [from, from + PAGE]);
      const answer = await fetch(`${vaultUrl}/v1/tokenize/batch`, {
        method: 'POST',
        headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
        body: JSON.stringify({ items: page.map((row) => ({ phone: row.phone })) }),
      });
      if (answer.status !== 200) throw new Error(`batch tokenize answered ${answer.status}`);
      const { results } = await answer.json();
      await pool.query(`UPDATE ${table} AS t SET token = u.token FROM unnest($1::bigint[], $2::text[]) AS u(id, token) WHERE t.id = u.id`, [page.map((row) => row.id), results.map((r) => r.token)]);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
}

/**
 * Runs the measurements on `database` (createBenchDatabase's) with the vault at `vaultUrl`: the migration over
 * HTTP, the import, the migration over HTTP again (the import is compared with the two runs' mean), and the resume.
 */
export async function benchImport({ database, vaultUrl, jwt, rows, vaultPid }) {
  const pool = new pg.Pool({ connectionString: database.url, max: IN_FLIGHT + 1 });
  try {
    await sourceTable(pool, 'import_http', rows);
    await sourceTable(pool, 'import_cli', rows);
    await sourceTable(pool, 'import_http_after', rows);
    const resumeRows = Math.max(20_000, Math.floor(rows / 5));
    await sourceTable(pool, 'import_resume', resumeRows);
    await pool.query('CHECKPOINT');

    // The same migration over HTTP before and after the import, each on a table of its own: every run meets a
    // tokens table larger by the runs before it (about 8 µs more of Postgres a row per million rows here), so
    // the import, in the middle, is compared with the mean of the two.
    const overHttpOnce = async (table) => {
      log(`  the same migration over HTTP: ${rows.toLocaleString('en-US')} rows read a page at a time, batch tokenize (${IN_FLIGHT} in flight), tokens written back…`);
      const started = performance.now();
      const cost = await withCpu(vaultPid, async () => {
        await overHttp(pool, vaultUrl, jwt, table, rows);
        return { requests: rows, requestsPerSecond: 1, itemsPerSecond: 1 };
      });
      const seconds = (performance.now() - started) / 1000;
      await pool.query('CHECKPOINT');
      return { itemsPerSecond: rows / seconds, seconds, vaultUsPerItem: cost.processUsPerItem, postgresUsPerItem: cost.postgresUsPerItem, machineBusyPct: cost.machineBusyPct };
    };
    const httpBefore = await overHttpOnce('import_http');

    log(`  phonevault import: ${rows.toLocaleString('en-US')} rows from a table…`);
    let cli;
    const imported = await withCpu(vaultPid, async () => {
      cli = await runImport(database.env, ['--tenant', 'bench-import', '--table', 'import_cli', '--column', 'phone', '--key', 'id', '--token-column', 'token']);
      return { requests: rows, requestsPerSecond: 1, itemsPerSecond: 1 };
    });
    if (cli.code !== 0) throw new Error(`import exited ${cli.code}: ${cli.stderr.slice(-400)}`);
    const { n: left } = (await pool.query('SELECT count(*)::int AS n FROM import_cli WHERE token IS NULL')).rows[0];
    if (left !== 0) throw new Error(`import left ${left} rows without a token`);
    await pool.query('CHECKPOINT');
    const httpAfter = await overHttpOnce('import_http_after');

    log(`  an import of ${resumeRows.toLocaleString('en-US')} rows killed (SIGKILL) halfway, then run again…`);
    const resumeArgs = ['--tenant', 'bench-resume', '--table', 'import_resume', '--column', 'phone', '--key', 'id', '--token-column', 'token'];
    await runImport(database.env, resumeArgs, (child) => {
      const poll = setInterval(async () => {
        const { rows: at } = await pool.query(`SELECT coalesce(sum((counts->>'read')::int), 0)::int AS read FROM import_checkpoints WHERE tenant_id = 'bench-resume'`);
        if ((at[0]?.read ?? 0) >= resumeRows / 2) {
          clearInterval(poll);
          child.kill('SIGKILL');
        }
      }, 20);
      child.on('exit', () => clearInterval(poll));
    });
    const killedAt = (await pool.query(`SELECT coalesce(sum((counts->>'read')::int), 0)::int AS read FROM import_checkpoints WHERE tenant_id = 'bench-resume'`)).rows[0].read;
    // Time to resume: from the second start until its first batch commits (the checkpoint moves past the kill).
    let firstBatchMs = null;
    const restarted = performance.now();
    const resumed = await runImport(database.env, resumeArgs, () => {
      const poll = setInterval(async () => {
        const { rows: at } = await pool.query(`SELECT coalesce(sum((counts->>'read')::int), 0)::int AS read FROM import_checkpoints WHERE tenant_id = 'bench-resume'`);
        if ((at[0]?.read ?? 0) > killedAt && firstBatchMs === null) {
          firstBatchMs = performance.now() - restarted;
          clearInterval(poll);
        }
      }, 10);
    });
    const { n: tokensMade } = (await pool.query(`SELECT count(*)::int AS n FROM tokens WHERE tenant_id = 'bench-resume'`)).rows[0];

    return {
      rows,
      http: { before: httpBefore, after: httpAfter, itemsPerSecond: (httpBefore.itemsPerSecond + httpAfter.itemsPerSecond) / 2 },
      import: {
        itemsPerSecond: rows / cli.seconds,
        seconds: cli.seconds,
        importUsPerItem: (cli.cpuSeconds * 1e6) / rows,
        postgresUsPerItem: imported.postgresUsPerItem,
        machineBusyPct: imported.machineBusyPct,
      },
      resume: { rows: resumeRows, killedAt, firstBatchMs, totalSeconds: resumed.seconds, exit: resumed.code, tokensMade, duplicates: tokensMade - resumeRows },
    };
  } finally {
    await pool.end();
  }
}

