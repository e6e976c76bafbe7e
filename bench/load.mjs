import { randomUUID } from 'node:crypto';
// A closed-loop load generator on node:http: `connections` keep-alive sockets, each sending its next request as
// soon as the previous answer arrives, for `durationMs`. It shares the machine's cores with what it measures.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The median of the numbers given (null and undefined left out), or null when there are none. */
export function median(values) {
  const sorted = values.filter((v) => v !== null && v !== undefined).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function summarize(latenciesMs, completed, elapsedMs, items = 1) {
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    requests: completed,
    requestsPerSecond: (completed / elapsedMs) * 1000,
    itemsPerSecond: ((completed * items) / elapsedMs) * 1000,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
}

/** Runs `makeRequest(i)` → {path, body, headers} against baseUrl; returns throughput and latency. */
export async function httpLoad({ baseUrl, connections, durationMs, makeRequest, items = 1, expectStatus }) {
  const url = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies = [];
  let completed = 0;
  let errors = 0;
  let counter = 0;
  const deadline = performance.now() + durationMs;
  const one = () =>
    new Promise((resolve) => {
      const { path, body, headers = {}, method = 'POST' } = makeRequest(counter++);
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const started = performance.now();
      const req = http.request(
        { host: url.hostname, port: url.port, path, method, agent, headers: { ...headers, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== expectStatus) errors++;
            else {
              completed++;
              latencies.push(performance.now() - started);
            }
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(payload);
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline) await one();
    }),
  );
  const elapsed = performance.now() - started;
  agent.destroy();
  return { ...summarize(latencies, completed, elapsed, items), errors };
}

/** The same closed loop for a function returning a promise (raw database baselines). */
export async function fnLoad({ concurrency, durationMs, run, items = 1 }) {
  const latencies = [];
  let completed = 0;
  let errors = 0;
  let counter = 0;
  const deadline = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await run(counter++);
          completed++;
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  return { ...summarize(latencies, completed, performance.now() - started, items), errors };
}

/**
 * The same closed loop driven by wrk (C, one thread), when it is installed: it costs the shared cores far less
 * than a Node client, so more of the machine goes to what is measured. Bodies are precomputed and cycled.
 */

export function wrkAvailable() {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    return error.status === 1; // wrk --version exits 1 after printing its version
  }
}

export async function wrkLoad({ baseUrl, connections, durationMs, makeRequest, items = 1, expectStatus, distinctBodies = 2000, uniqueHeader, counter }) {
  const requests = Array.from({ length: distinctBodies }, (_, i) => makeRequest(i));
  const { headers = {}, method = 'POST' } = requests[0];
  const varying = Object.keys(headers).filter((name) => requests.some((r) => r.headers?.[name] !== headers[name]));
  const lua = [
    // A path and a body a request (a GET, as a peer's read by its token, has no body).
    'local paths = {',
    ...requests.map((r) => `[==[${r.path}]==],`),
    '}',
    'local bodies = {',
    ...requests.map((r) => `[==[${r.body === undefined ? '' : JSON.stringify(r.body)}]==],`),
    '}',
    // A header that differs between requests (each tenant's own JWT) goes in a table of its own, a value a request.
    ...varying.flatMap((name, n) => [`local varying${n} = {`, ...requests.map((r) => `[==[${r.headers[name]}]==],`), '}']),
    'local i = 0',
    `local headers = { ${[...(method === 'GET' ? [] : ['["Content-Type"] = "application/json"']), ...Object.entries(headers).map(([k, v]) => `["${k}"] = "${v}"`)].join(', ')} }`,
    // A header with a value of its own per request (an Idempotency-Key), from a prefix of this run's own; with
    // `counter`, that placeholder in a body becomes the request's number, 7 digits (a record of its own a request).
    'local n = 0',
    `request = function() i = i % #bodies + 1; n = n + 1;${varying.map((name, n) => ` headers["${name}"] = varying${n}[i];`).join('')}${uniqueHeader ? ` headers["${uniqueHeader}"] = "${randomUUID()}-" .. n;` : ''} return wrk.format("${method}", paths[i], headers, ${method === 'GET' ? 'nil' : counter ? `(bodies[i]:gsub("${counter}", string.format("%07d", n % 10000000)))` : 'bodies[i]'}) end`,
    'local bad = 0',
    `response = function(status) if status ~= ${expectStatus} then bad = bad + 1 end end`,
    'done = function(summary, latency)',
    '  io.write(string.format("RESULT %d %d %d %f %f %d\\n", summary.requests, summary.duration, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status, latency:percentile(50), latency:percentile(99), bad))',
    'end',
  ].join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'pv-wrk-'));
  writeFileSync(join(dir, 'load.lua'), lua);
  const output = await new Promise((resolve, reject) =>
    execFile('wrk', ['-t1', `-c${connections}`, `-d${Math.round(durationMs / 1000)}s`, '--timeout', '10s', '-s', join(dir, 'load.lua'), baseUrl], { maxBuffer: 1 << 20 }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    ),
  );
  const [, requestsDone, durationUs, errors, p50Us, p99Us] = /RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)/.exec(output).map(Number);
  // Responses with an unexpected status are counted as errors by the Lua script above; wrk's own status count covers >399.
  const completed = requestsDone - errors;
  return {
    requests: completed,
    requestsPerSecond: completed / (durationUs / 1e6),
    itemsPerSecond: (completed * items) / (durationUs / 1e6),
    p50Ms: p50Us / 1000,
    p99Ms: p99Us / 1000,
    errors,
  };
}
