import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createSigner } from 'fast-jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Issue 17: the committed Dockerfile and docker-compose.yml, built and run under a real Docker engine. Run by
// test/deploy/run.sh, which provides the engine, Compose v2, the base images (DEPLOY_*_IMAGE) and an npm mirror.
const repo = new URL('../../', import.meta.url).pathname;
const need = (name: string) => process.env[name] ?? (() => { throw new Error(`${name} is not set: run npm run test:deploy`); })();
const project = `pvdeploy${randomBytes(3).toString('hex')}`;
// One tag, rebuilt each run: its layers stay in the engine as the next build's cache.
const image = 'phonevault-deploy/vault:test';
let dir: string;
let env: NodeJS.ProcessEnv;

function run(command: string, args: string[], options: { input?: string; allowFail?: boolean } = {}): string {
  const result = spawnSync(command, args, { cwd: dir, env, encoding: 'utf8', input: options.input, maxBuffer: 1 << 30 });
  if (result.status !== 0 && !options.allowFail) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr.slice(-2000)}`);
  return result.stdout;
}
const compose = (...args: string[]) => run('docker', ['compose', ...args]);
const inspect = (id: string) => JSON.parse(run('docker', ['inspect', id]))[0];

/** Two consecutive free loopback ports: the first for the stack, both for the replicas' range. */
async function freePorts(): Promise<number> {
  const listen = (at: number) =>
    new Promise<ReturnType<typeof createServer> | null>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(null)).listen(at, '127.0.0.1', () => resolve(server));
    });
  for (;;) {
    const first = (await listen(0))!;
    const { port } = first.address() as { port: number };
    const second = await listen(port + 1);
    await new Promise((resolve) => first.close(resolve));
    if (second) {
      await new Promise((resolve) => second.close(resolve));
      return port;
    }
  }
}

const secret = (name: string) => readFileSync(join(dir, 'secrets', name), 'utf8');
const jwt = (scope: string, tenant = 'acme', sub = 'crm') =>
  createSigner({ key: secret('jwt_secret'), algorithm: 'HS256', iss: 'https://issuer.example', aud: 'phonevault', expiresIn: 600_000 })({ sub, tenant, scope });

/** One request on a connection of its own (so that a stopped instance shows as a refused or reset connection). */
function call(port: number, path: string, token: string, body?: unknown, method = 'POST'): Promise<{ status: number; json: any }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method, agent: false, headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : null });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const PHONE = '+12015550123';
let port: number;

beforeAll(async () => {
  // A copy of the working tree (committed and new files, nothing ignored): the test's secrets, .env and volumes
  // never touch a developer's own.
  dir = mkdtempSync(join(tmpdir(), 'pv-deploy-'));
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: repo, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const file of files) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    cpSync(join(repo, file), join(dir, file), { dereference: false });
  }
  port = await freePorts();
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    // The engine run.sh checked, wherever it is.
    ...Object.fromEntries(['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_CONFIG', 'DOCKER_CERT_PATH', 'DOCKER_TLS_VERIFY'].filter((name) => process.env[name]).map((name) => [name, process.env[name]])),
    COMPOSE_PROJECT_NAME: project,
    PHONEVAULT_IMAGE: image,
    PHONEVAULT_PORT: String(port),
    POSTGRES_IMAGE: need('DEPLOY_POSTGRES_IMAGE'),
    REDIS_IMAGE: need('DEPLOY_REDIS_IMAGE'),
    NODE_IMAGE: need('DEPLOY_NODE_IMAGE'),
  };
  // The secrets first, as a user's tree has them when they build: none may reach the image.
  run('sh', ['scripts/make-secrets.sh']);
  // The committed Dockerfile, unchanged: only the base image and the npm registry are given as build arguments.
  run('docker', ['build', '-q', '--network', 'host', '--build-arg', `NODE_IMAGE=${env.NODE_IMAGE}`, '--build-arg', `NPM_CONFIG_REGISTRY=${need('DEPLOY_NPM_REGISTRY')}`, '-t', image, '.']);
});

afterAll(() => {
  if (!dir) return;
  run('docker', ['compose', '-f', 'docker-compose.yml', '-f', 'docker-compose.ha.yml', 'down', '-v', '--remove-orphans', '-t', '20'], { allowFail: true });
  rmSync(dir, { recursive: true, force: true });
});

describe('the compose stack, from outside', () => {
  const tokens: string[] = [];

  it('comes up healthy and answers tokenize, detokenize and masked detokenize on the published loopback port', async () => {
    compose('up', '-d', '--wait');
    const services = compose('ps', '--format', 'json').trim().split('\n').map((line) => JSON.parse(line));
    expect(services.map((s) => s.Service).sort()).toEqual(['postgres', 'redis', 'vault']);
    for (const service of services) expect(service.Health, service.Service).toBe('healthy');
    const binding = inspect(services.find((s) => s.Service === 'vault').ID).HostConfig.PortBindings['8080/tcp'];
    expect(binding).toEqual([{ HostIp: '127.0.0.1', HostPort: String(port) }]);

    const made = await call(port, '/v1/tokenize', jwt('tokenize'), { phone: PHONE });
    expect(made.status).toBe(201);
    tokens.push(made.json.token);
    const plain = await call(port, '/v1/detokenize', jwt('detokenize'), { tokens });
    expect(plain.json.results[0].phone).toBe(PHONE);
    const masked = await call(port, '/v1/detokenize', jwt('detokenize:masked'), { tokens });
    expect(masked.json.results[0].masked).toMatch(/^\+1\*+0123$/);
    expect(masked.json.results[0].phone).toBeUndefined();
    expect((await call(port, '/v1/detokenize', jwt('tokenize'), { tokens })).status).toBe(403);
  });

  it('runs the vault as uid 1000, read-only, without capabilities, and shows no secret in inspect, history or layers', () => {
    const vault = inspect(compose('ps', '-q', 'vault').trim());
    expect(compose('exec', '-T', 'vault', 'id', '-u').trim()).toBe('1000');
    expect(vault.HostConfig.ReadonlyRootfs).toBe(true);
    expect(vault.HostConfig.CapDrop).toEqual(['ALL']);
    expect(vault.HostConfig.SecurityOpt).toContain('no-new-privileges:true');
    // Not only the effective set (zero for any non-root uid): nothing in the bounding set either, so nothing can be regained.
    const status = compose('exec', '-T', 'vault', 'cat', '/proc/1/status');
    for (const set of ['CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(status).toMatch(new RegExp(`${set}:\\s+0+\\n`));
    expect(status).toMatch(/NoNewPrivs:\s+1/);
    const write = spawnSync('docker', ['compose', 'exec', '-T', 'vault', 'sh', '-c', 'touch /app/written'], { cwd: dir, env, encoding: 'utf8' });
    expect(write.status).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);

    const secrets = readdirSync(join(dir, 'secrets')).map((name) => secret(name).trim());
    const containers = compose('ps', '-aq').trim().split('\n');
    // Every layer of the image, as bytes.
    const saved = join(dir, 'image.tar');
    run('docker', ['save', '-o', saved, image]);
    const seen = [
      Buffer.from(run('docker', ['inspect', ...containers, image])),
      Buffer.from(run('docker', ['history', '--no-trunc', image])),
      readFileSync(saved),
      Buffer.from(compose('logs')),
    ];
    rmSync(saved);
    // The layers are read as plain bytes: text the image does hold is found in them.
    expect(seen[2]!.includes('key-encryption keys ready')).toBe(true);
    for (const value of secrets) for (const bytes of seen) expect(bytes.includes(value)).toBe(false);
  });

  it('keeps every token through a restart of the vault and a down and up of the stack (the volume)', async () => {
    const read = async () => (await call(port, '/v1/detokenize', jwt('detokenize'), { tokens })).json.results[0].phone;
    compose('restart', 'vault');
    compose('up', '-d', '--wait');
    expect(await read()).toBe(PHONE);
    compose('down');
    compose('up', '-d', '--wait');
    expect(await read()).toBe(PHONE);
  });

  it('finishes in-flight requests on docker compose stop, turns new ones away after, and exits 0', async () => {
    const batch = { items: Array.from({ length: 1000 }, (_, i) => ({ phone: `+1201555${String(i).padStart(4, '0')}` })) };
    const token = jwt('tokenize detokenize', 'stopper');
    let stopping = false;
    const answers: Array<{ status: number; began: number; ended: number; tokens: string[] }> = [];
    const failures: Array<{ code: string; began: number }> = [];
    // Clients keep sending through the drain: each request on a connection of its own.
    const loop = async () => {
      for (;;) {
        const began = Date.now();
        try {
          const answer = await call(port, '/v1/tokenize/batch', token, batch);
          answers.push({ status: answer.status, began, ended: Date.now(), tokens: answer.status === 200 ? answer.json.results.map((r: { token: string }) => r.token) : [] });
        } catch (error) {
          failures.push({ code: (error as NodeJS.ErrnoException).code ?? String(error), began });
          if (stopping) return;
        }
      }
    };
    const loops = Array.from({ length: 6 }, loop);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    // Asynchronously, so that the clients go on while compose delivers SIGTERM and waits.
    stopping = true;
    const stopped = new Promise<number>((resolve) => spawn('docker', ['compose', 'stop', 'vault'], { cwd: dir, env, stdio: 'ignore' }).on('exit', (code) => resolve(code ?? -1)));
    const stopBegan = Date.now();
    expect(await stopped).toBe(0);
    await Promise.all(loops);
    const logs = compose('logs', '--no-log-prefix', 'vault').split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
    const signalAt = logs.find((line) => line.signal === 'SIGTERM' && line.msg === 'shutting down')?.time as number;
    expect(signalAt).toBeGreaterThanOrEqual(stopBegan - 1_000);
    // The server's own record (one line per request it handled, written when it answered) against the
    // client's: every request it served reached its client in full, none cut off; the others were refused with
    // 503 (the closing server's own refusals are logged apart). A request can only be
    // begun at the client and not yet received when the signal comes (a fresh connection still in Docker's
    // port proxy, or not yet read, which Node closes as idle): that one may be reset, never one received.
    const served = logs.filter((line) => line.msg === 'request' && line.tenant === 'stopper' && line.route === '/v1/tokenize/batch');
    const ok = (list: Array<{ status: number }>) => list.filter((a) => a.status === 200).length;
    expect(ok(served)).toBe(ok(answers));
    for (const line of served) expect([200, 503]).toContain(line.status);
    // Nothing sent well before the signal was lost on the way (the 1 s covers only the proxy's hop and a busy machine).
    expect(failures.filter((f) => f.began < signalAt - 1_000)).toEqual([]);
    const before = answers.filter((a) => a.began < signalAt);
    for (const answer of before) expect([200, 503]).toContain(answer.status);
    // Some were in flight when it came, and finished after it, with their work done.
    expect(before.filter((a) => a.ended > signalAt && a.status === 200).length).toBeGreaterThan(0);
    // After it, new requests are turned away (503 from the closing server, or a connection refused, or closed by
    // Docker's port proxy once nothing listens behind it): none of those was acknowledged.
    for (const answer of answers.filter((a) => a.began >= signalAt)) expect([200, 503]).toContain(answer.status);
    const vault = inspect(compose('ps', '-aq', 'vault').trim());
    expect(vault.State.ExitCode).toBe(0);
    compose('up', '-d', '--wait');
    // What was acknowledged is there.
    const acknowledged = answers.flatMap((a) => a.tokens);
    expect(acknowledged.length).toBeGreaterThan(0);
    const sample = acknowledged.filter((_, i) => i % 97 === 0);
    const read = await call(port, '/v1/detokenize', token, { tokens: sample });
    expect(read.json.results.every((r: { phone?: string }) => typeof r.phone === 'string')).toBe(true);
  });
});

describe('the image', () => {
  it('is production dependencies only, proves its HEALTHCHECK (healthy, and unhealthy when nothing listens) and STOPSIGNAL, and is measured', async () => {
    // What the lockfile marks dev-only (needed by no production dependency, however deep) is absent.
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')).packages as Record<string, { dev?: boolean }>;
    const devOnly = Object.entries(lock).filter(([path, entry]) => entry.dev && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path)).map(([path]) => path.slice('node_modules/'.length));
    expect(devOnly).toContain('vitest');
    const installed = run('docker', ['run', '--rm', '--entrypoint', 'sh', image, '-c', 'cd /app/node_modules && ls -d * @*/*']).split(/\s+/);
    expect(installed).toContain('fastify');
    expect(devOnly.filter((name) => installed.includes(name))).toEqual([]);
    expect(run('docker', ['run', '--rm', '--entrypoint', 'id', image, '-u']).trim()).toBe('1000');

    // The image alone (its own HEALTHCHECK, not compose's), on the stack's network and database.
    const network = `${project}_default`;
    const secretsDir = join(dir, 'secrets');
    const started = Date.now();
    const id = run('docker', [
      // Each secret mounted as a file, as compose does (the folder itself is private to its owner).
      'run', '-d', '--network', network, '--read-only', '--cap-drop', 'ALL',
      ...['database_url', 'vault_master_key', 'jwt_secret'].flatMap((name) => ['-v', `${join(secretsDir, name)}:/run/secrets/${name}:ro`]),
      '-e', 'DATABASE_URL_FILE=/run/secrets/database_url', '-e', 'VAULT_MASTER_KEY_FILE=/run/secrets/vault_master_key',
      '-e', 'JWT_SECRET_FILE=/run/secrets/jwt_secret', '-e', 'JWT_ISSUER=https://issuer.example', '-e', 'JWT_AUDIENCE=phonevault', image,
    ]).trim();
    // The same image with a process that never listens: its HEALTHCHECK must fail it, or healthy above proves nothing.
    const silent = run('docker', ['run', '-d', '--read-only', '--cap-drop', 'ALL', '--entrypoint', 'sleep', image, '300']).trim();
    try {
      let health = '';
      while (health !== 'healthy' && Date.now() - started < 60_000) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        const state = inspect(id).State;
        health = state.Health?.Status ?? '';
        expect(state.Running, run('docker', ['logs', id])).toBe(true);
        expect(health).not.toBe('unhealthy');
      }
      expect(health).toBe('healthy');
      const healthyMs = Date.now() - started;
      const stopStarted = Date.now();
      run('docker', ['stop', '-t', '20', id]);
      const stopMs = Date.now() - stopStarted;
      const state = inspect(id).State;
      expect(state.ExitCode).toBe(0);
      expect(run('docker', ['logs', id])).toContain('"signal":"SIGTERM","msg":"shutting down"');
      expect(stopMs).toBeLessThan(10_000);
      const sizeMb = inspect(image).Size / 1e6;
      // The process's start to Docker's first passing check, apart from the container's creation (vfs copies the image).
      const { StartedAt } = state;
      const firstPass = inspect(id).State.Health.Log.find((entry: { ExitCode: number }) => entry.ExitCode === 0);
      const processToHealthyMs = Date.parse(firstPass.End) - Date.parse(StartedAt);
      console.log(`image ${sizeMb.toFixed(0)} MB; docker run to healthy ${healthyMs} ms, of which process start to the first passing HEALTHCHECK ${processToHealthyMs} ms (the check runs every 10 s); stopped in ${stopMs} ms`);
      // Three failed checks after the 10 s start period: about 40 s from its start.
      let silentHealth = '';
      while (silentHealth !== 'unhealthy' && Date.now() - started < 90_000) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        silentHealth = inspect(silent).State.Health?.Status ?? '';
        expect(silentHealth).not.toBe('healthy');
      }
      expect(silentHealth).toBe('unhealthy');
    } finally {
      run('docker', ['rm', '-f', id, silent], { allowFail: true });
    }
  });
});

describe('two replicas on one Postgres and Redis (docker-compose.ha.yml)', () => {
  const ha = (...args: string[]) => compose('-f', 'docker-compose.yml', '-f', 'docker-compose.ha.yml', ...args);
  let ports: number[];
  let ids: string[];
  beforeAll(async () => {
    writeFileSync(join(dir, '.env'), 'RATE_LIMIT_TOKENIZE=20/1m\nKEY_ROTATION_MIN_INTERVAL=0s\n');
    env.PHONEVAULT_PORT_LAST = String(port + 1);
    ha('up', '-d', '--wait');
    ids = ha('ps', '-q', 'vault').trim().split('\n');
    expect(ids).toHaveLength(2);
    ports = ids.map((id) => Number(inspect(id).NetworkSettings.Ports['8080/tcp'][0].HostPort));
    expect(new Set(ports).size).toBe(2);
  });

  it('gives a client alternating between them one throttling budget, and reads on one what the other made', async () => {
    const token = jwt('tokenize detokenize', 'budget', 'alternating');
    const answers = [];
    for (let i = 0; i < 40; i++) answers.push(await call(ports[i % 2]!, '/v1/tokenize', token, { phone: PHONE }));
    expect(answers.filter((a) => a.status === 201)).toHaveLength(20);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(20);
    const made = answers.filter((a) => a.status === 201).map((a) => a.json.token as string);
    for (const [i, p] of ports.entries()) {
      const read = await call(p, '/v1/detokenize', token, { tokens: made.filter((_, k) => k % 2 !== i) });
      expect(read.json.results.every((r: { phone: string }) => r.phone === PHONE)).toBe(true);
    }
  });

  it('writes with a key rotated on one replica on the other within the 5 s lease', async () => {
    const admin = jwt('admin tokenize', 'rotor', 'ops');
    for (const p of ports) expect((await call(p, '/v1/tokenize', admin, { phone: PHONE })).status).toBe(201);
    const rotated = await call(ports[0]!, '/v1/keys/rotate', admin);
    expect(rotated.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    for (let i = 0; i < 5; i++) expect((await call(ports[1]!, '/v1/tokenize', admin, { phone: PHONE })).status).toBe(201);
    const keys = (await call(ports[1]!, '/v1/keys', admin, undefined, 'GET')).json.keys as Array<{ version: number; tokens: number }>;
    expect(keys.find((k) => k.version === rotated.json.activeVersion)?.tokens).toBe(5);
  });

  it('loses no acknowledged write when one replica stops mid-load', async () => {
    const acknowledged: Array<{ token: string; phone: string; at: number }> = [];
    const failures: string[] = [];
    let n = 0;
    const until = Date.now() + 6_000;
    const loop = async (p: number) => {
      while (Date.now() < until) {
        const phone = `+1201555${String(n++ % 10_000).padStart(4, '0')}`;
        try {
          // A client of its own each time, so that no budget is what stops it.
          const answer = await call(p, '/v1/tokenize', jwt('tokenize', 'ha', `w${n}`), { phone });
          if (answer.status === 201) acknowledged.push({ token: answer.json.token, phone, at: Date.now() });
          else if (answer.status !== 503) failures.push(String(answer.status));
        } catch {
          // The stopping replica: refused, or closed by Docker's port proxy once nothing listens behind it.
          // Nothing was acknowledged; this client is done with it.
          return;
        }
      }
    };
    const loops = [...ports, ...ports].map(loop);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    // Asynchronously: the clients keep writing to both while the replica drains and stops.
    const stopped = await new Promise<number>((resolve) => spawn('docker', ['stop', '-t', '15', ids[1]!], { env, stdio: 'ignore' }).on('exit', (code) => resolve(code ?? -1)));
    const stoppedAt = Date.now();
    expect(stopped).toBe(0);
    await Promise.all(loops);
    expect(inspect(ids[1]!).State.ExitCode).toBe(0);
    expect(failures).toEqual([]);
    expect(acknowledged.length).toBeGreaterThan(50);
    // The other replica went on taking writes after its peer stopped.
    expect(acknowledged.filter((a) => a.at > stoppedAt).length).toBeGreaterThan(0);
    const reader = jwt('detokenize', 'ha', 'reader');
    for (let start = 0; start < acknowledged.length; start += 100) {
      const slice = acknowledged.slice(start, start + 100);
      const read = await call(ports[0]!, '/v1/detokenize', reader, { tokens: slice.map((a) => a.token) });
      expect(read.json.results.map((r: { phone: string }) => r.phone)).toEqual(slice.map((a) => a.phone));
    }
  });
});
