import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

// What can be checked without a Docker engine; npm run test:deploy (test/deploy/) runs the stack for real.
const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
const compose = parse(read('docker-compose.yml'));
const dockerfile = read('Dockerfile');
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .filter((line) => line.trim() && !line.trim().startsWith('#'));

// Anything that looks like key material or a password assignment.
const SECRET_LOOKING = [/[A-Za-z0-9+/]{40,}={0,2}/, /password[ \t]*[:=][ \t]*(?!\$\{)[^\s/]+/i, /postgres:\/\/[^:\s]+:[^@\s$]+@/];

describe('Dockerfile', () => {
  it('is multi-stage on a current Node LTS slim base, which only a build argument replaces', () => {
    const froms = instructions.filter((line) => line.startsWith('FROM'));
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(instructions).toContain('ARG NODE_IMAGE=node:22-bookworm-slim');
    for (const from of froms) expect(from).toMatch(/^FROM \$\{NODE_IMAGE\} AS \w+$/);
  });

  it('installs production dependencies only in the final stage', () => {
    const runtime = instructions.slice(instructions.findLastIndex((line) => line.startsWith('FROM')));
    expect(runtime.some((line) => /npm ci .*--omit=dev/.test(line))).toBe(true);
    expect(runtime.some((line) => /COPY --from=build \/app\/dist/.test(line))).toBe(true);
  });

  it('runs as a non-root user, with a health check, an exec-form entry point and SIGTERM', () => {
    const user = instructions.filter((line) => line.startsWith('USER')).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/USER\s+(root|0)\b/);
    expect(instructions.some((line) => line.startsWith('HEALTHCHECK') && line.includes('/healthz'))).toBe(true);
    const entrypoint = instructions.find((line) => line.startsWith('ENTRYPOINT'))!;
    expect(JSON.parse(entrypoint.slice('ENTRYPOINT'.length))).toEqual(['node', 'bin/phonevault.js']);
    expect(instructions).toContain('STOPSIGNAL SIGTERM');
  });
});

describe('docker-compose.yml', () => {
  it('runs Postgres (with a volume), Redis and the vault, each with a health check', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['postgres', 'redis', 'vault']);
    for (const service of Object.values(compose.services) as Array<{ healthcheck?: { test?: unknown } }>) {
      expect(service.healthcheck?.test).toBeDefined();
    }
    expect(compose.services.postgres.volumes.some((v: string) => v.endsWith(':/var/lib/postgresql/data'))).toBe(true);
  });

  it('starts the vault only once its dependencies are healthy, migrating on start, with Redis shared', () => {
    const vault = compose.services.vault;
    expect(vault.depends_on).toEqual({ postgres: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
    expect(vault.environment.MIGRATE_ON_START).toBe('true');
    expect(vault.environment.REDIS_URL).toBe('redis://redis:6379');
    expect(vault.ports).toEqual(['${PHONEVAULT_BIND:-127.0.0.1}:${PHONEVAULT_PORT:-8080}:8080']);
  });

  it('takes every secret from a file, never from a value in the file', () => {
    const vault = compose.services.vault;
    for (const name of ['DATABASE_URL', 'VAULT_MASTER_KEY', 'JWT_SECRET']) {
      expect(vault.environment[name]).toBeUndefined();
      expect(vault.environment[`${name}_FILE`]).toMatch(/^\/run\/secrets\//);
    }
    for (const secret of Object.values(compose.secrets) as Array<{ file: string }>) expect(secret.file).toMatch(/^\.\/secrets\//);
  });

  it('commits no secret values in the compose file, the Dockerfile or .env.example', () => {
    for (const file of ['docker-compose.yml', 'Dockerfile', '.env.example']) {
      for (const pattern of SECRET_LOOKING) expect(read(file), `${file} ${pattern}`).not.toMatch(pattern);
    }
    expect(read('.gitignore')).toMatch(/^secrets\/$/m);
    expect(read('.gitignore')).toMatch(/^\.env$/m);
  });
});
