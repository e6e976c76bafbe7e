// npm run soak: a mixed load at about 80% of the capacity measured at the start of the same run, for
// SOAK_SECONDS (300 by default). Fails (exit 1) on any unexpected answer or on memory growth of 10% or more.
// Mix per 10 requests: 5 single detokenize, 3 single tokenize, 1 batch tokenize of 100, 1 lookup.
import http from 'node:http';
import { createBenchDatabase, log, phone, rssMb, seedTokens, startVault } from './harness.mjs';

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 300);
const LOAD_SHARE = Number(process.env.SOAK_LOAD ?? 0.8);

function mixed(url, jwt, tokens) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const target = new URL(url);
  let i = 0;
  return () =>
    new Promise((resolve) => {
      const n = i++;
      const kind = n % 10;
      const [path, body, expect] =
        kind < 5
          ? ['/v1/detokenize', { tokens: [tokens[n % tokens.length]] }, 200]
          : kind < 8
            ? ['/v1/tokenize', { phone: phone(n) }, 201]
            : kind === 8
              ? ['/v1/tokenize/batch', { items: Array.from({ length: 100 }, (_, k) => ({ phone: phone(n + k) })) }, 200]
              : ['/v1/lookup', { phone: phone(n) }, 200];
      const payload = Buffer.from(JSON.stringify(body));
      const req = http.request(
        { host: target.hostname, port: target.port, path, method: 'POST', agent, headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json', 'content-length': payload.length } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === expect ? null : `${path} ${res.statusCode}`));
        },
      );
      req.on('error', (error) => resolve(`${path} ${error.code ?? 'error'}`));
      req.end(payload);
    });
}

/** Closed loop with 50 in flight: the capacity of this mix on this machine, now. */
async function capacity(send, seconds) {
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (performance.now() < deadline) {
      await send();
      done++;
    }
  }));
  return (done / (performance.now() - started)) * 1000;
}

/** Open loop at a fixed rate: requests go out on schedule whether or not earlier ones have answered. */
async function soak(send, rate, seconds, onTick) {
  const errors = [];
  let sent = 0;
  const started = performance.now();
  const inFlight = new Set();
  while (performance.now() - started < seconds * 1000) {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    while (sent < due) {
      sent++;
      const request = send().then((error) => {
        if (error) errors.push(error);
        inFlight.delete(request);
      });
      inFlight.add(request);
    }
    onTick(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await Promise.all(inFlight);
  return { sent, errors };
}

const database = await createBenchDatabase('phonevault_soak');
let vault;
try {
  vault = await startVault(database.env);
  const jwt = database.jwt();
  const tokens = await seedTokens(vault.url, jwt, 5_000);
  const send = mixed(vault.url, jwt, tokens);
  await capacity(send, 3); // warm-up
  const measured = await capacity(send, 5);
  const rate = measured * LOAD_SHARE;
  log(`capacity of the mix ${measured.toFixed(0)} req/s; soaking at ${rate.toFixed(0)} req/s (${(LOAD_SHARE * 100).toFixed(0)}%) for ${SOAK_SECONDS} s`);
  // Memory is compared from the first minute's end (heap grown to its working size) to the last.
  const baselineAt = Math.min(60, SOAK_SECONDS / 5) * 1000;
  let baseline = null;
  let lastReport = 0;
  const result = await soak(send, rate, SOAK_SECONDS, (elapsed) => {
    if (baseline === null && elapsed >= baselineAt) baseline = rssMb(vault.child.pid).current;
    if (elapsed - lastReport >= 30_000) {
      lastReport = elapsed;
      log(`  ${(elapsed / 1000).toFixed(0)} s: RSS ${rssMb(vault.child.pid).current.toFixed(0)} MB`);
    }
  });
  const end = rssMb(vault.child.pid);
  const growth = (end.current - baseline) / baseline;
  const ok = result.errors.length === 0 && growth < 0.1;
  process.stdout.write(
    [
      `soak: ${result.sent} requests in ${SOAK_SECONDS} s at ${rate.toFixed(0)} req/s (${(LOAD_SHARE * 100).toFixed(0)}% of ${measured.toFixed(0)})`,
      `errors: ${result.errors.length}${result.errors.length ? ` (first: ${result.errors.slice(0, 5).join(', ')})` : ''} (must be 0)`,
      `memory: RSS ${baseline.toFixed(0)} MB after warm-up, ${end.current.toFixed(0)} MB at the end: ${(growth * 100).toFixed(1)}% growth (must stay under 10%); peak ${end.peak.toFixed(0)} MB`,
      ok ? 'soak PASSED' : 'soak FAILED',
      '',
    ].join('\n'),
  );
  process.exitCode = ok ? 0 : 1;
} finally {
  vault?.child.kill('SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, 300));
  await database.drop();
}
