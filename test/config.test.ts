import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseRateLimit } from '../src/config/index.js';

const masterKey = randomBytes(32).toString('base64');
const jwtSecret = randomBytes(48).toString('base64');
const valid = {
  DATABASE_URL: 'postgres://vault:s3cret-password@db:5432/vault',
  VAULT_MASTER_KEY: masterKey,
  JWT_SECRET: jwtSecret,
  JWT_ISSUER: 'https://id.example',
  JWT_AUDIENCE: 'phonevault',
};

function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  return [];
}

describe('configuration', () => {
  it('parses a complete environment with safe defaults', () => {
    const config = loadConfig(valid);
    expect(config.host).toBe('127.0.0.1');
    expect(config.port).toBe(8080);
    expect(config.batchMax).toBe(1000);
    expect(config.keyMaxEncryptions).toBe(2 ** 31);
    expect(config.trustProxy).toEqual([]);
    expect(config.kek.masterKeys[0]!.id).toBe('default');
    expect(config.rateLimits.tokenize).toEqual({ max: 12000, windowMs: 60_000 });
  });

  it('names every missing variable', () => {
    const problems = problemsOf({});
    for (const name of ['DATABASE_URL', 'VAULT_MASTER_KEY', 'JWT_SECRET', 'JWT_ISSUER', 'JWT_AUDIENCE']) {
      expect(problems.some((p) => p.startsWith(`${name}:`)), name).toBe(true);
    }
  });

  it('stops on weak secrets, naming the variable and never printing the value', () => {
    const weak = { ...valid, VAULT_MASTER_KEY: randomBytes(16).toString('base64'), JWT_SECRET: 'short-secret' };
    const problems = problemsOf(weak);
    expect(problems.some((p) => p.startsWith('VAULT_MASTER_KEY:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('JWT_SECRET: must be at least 32 bytes'))).toBe(true);
    const text = problems.join('\n');
    expect(text).not.toContain(weak.VAULT_MASTER_KEY);
    expect(text).not.toContain('short-secret');
    expect(problemsOf({ ...valid, JWT_SECRET: 'a'.repeat(40) })).toEqual([expect.stringContaining('JWT_SECRET: is not random enough')]);
    // 32 printable characters in a pattern are not a secret either, however long.
    for (const patterned of ['abcdefghijklmnopqrstuvwxyz012345', 'qwertyuiopasdfghjklzxcvbnm123456', 'Password1!Password1!Password1!Pa']) {
      expect(problemsOf({ ...valid, JWT_SECRET: patterned }), patterned).toEqual([expect.stringMatching(/^JWT_SECRET: is (not random enough|a placeholder)/)]);
    }
    expect(problemsOf({ ...valid, JWT_SECRET: 'change-me-change-me-change-me-0123456789' })).toEqual(['JWT_SECRET: is a placeholder, not a secret']);
  });

  it('never prints the database URL, which can hold a password', () => {
    const problems = problemsOf({ ...valid, DATABASE_URL: 'mysql://root:hunter2-password@db/x' });
    expect(problems).toEqual(['DATABASE_URL: must be a postgres:// connection string']);
  });

  it('reads secrets from *_FILE, and refuses both a value and a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pv-config-'));
    writeFileSync(join(dir, 'master'), `${masterKey}\n`);
    writeFileSync(join(dir, 'jwt'), jwtSecret);
    const config = loadConfig({ ...valid, VAULT_MASTER_KEY: undefined, JWT_SECRET: undefined, VAULT_MASTER_KEY_FILE: join(dir, 'master'), JWT_SECRET_FILE: join(dir, 'jwt') });
    expect(config.kek.masterKeys[0]!.key.toString('base64')).toBe(masterKey);
    expect(config.jwt.verification).toEqual({ kind: 'secret', secret: Buffer.from(jwtSecret) });
    expect(problemsOf({ ...valid, JWT_SECRET_FILE: join(dir, 'jwt') })).toEqual(['JWT_SECRET and JWT_SECRET_FILE are both set; set one']);
    expect(problemsOf({ ...valid, JWT_SECRET: undefined, JWT_SECRET_FILE: join(dir, 'missing') })).toContain('JWT_SECRET_FILE: cannot read the file it names');
  });

  it('parses rate limits and refuses nonsense', () => {
    expect(parseRateLimit('600/1m')).toEqual({ max: 600, windowMs: 60_000 });
    expect(parseRateLimit('20000/1h')).toEqual({ max: 20000, windowMs: 3_600_000 });
    expect(parseRateLimit('10/s')).toEqual({ max: 10, windowMs: 1000 });
    for (const bad of ['600', '0/1m', '10/0s', 'x/1m', '10/1y']) expect(parseRateLimit(bad), bad).toBeNull();
    expect(problemsOf({ ...valid, RATE_LIMIT_TOKENIZE: 'lots' })).toEqual(['RATE_LIMIT_TOKENIZE: must look like <max>/<window>, e.g. 600/1m']);
  });

  it('refuses TRUST_PROXY=true and out-of-range numbers', () => {
    expect(problemsOf({ ...valid, TRUST_PROXY: 'true' })).toHaveLength(1);
    expect(problemsOf({ ...valid, PORT: '70000', BATCH_MAX: '0' })).toHaveLength(2);
  });
});

describe('configuration for running anywhere', () => {
  
  const rsaPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const noSecret = { ...valid, JWT_SECRET: undefined };

  it('derives the algorithm allow-list from the key', () => {
    expect(loadConfig({ ...noSecret, JWT_PUBLIC_KEY: rsaPem }).jwt.algorithms).toEqual(['RS256']);
    expect(loadConfig({ ...noSecret, JWT_PUBLIC_KEY: ecPem }).jwt.algorithms).toEqual(['ES256']);
    expect(loadConfig({ ...noSecret, JWT_JWKS_URL: 'https://id.example/jwks.json' }).jwt).toMatchObject({
      verification: { kind: 'jwks', jwksUrl: 'https://id.example/jwks.json', refreshMs: 300_000, minRefreshMs: 30_000 },
      algorithms: ['RS256', 'ES256'],
    });
  });

  it('refuses HS256 next to a public key, and more or less than one verification method', () => {
    expect(problemsOf({ ...noSecret, JWT_PUBLIC_KEY: rsaPem, JWT_ALGORITHMS: 'RS256,HS256' })).toEqual(['JWT_ALGORITHMS: HS256 cannot be used with a public key or JWKS']);
    expect(problemsOf({ ...valid, JWT_JWKS_URL: 'https://id.example/jwks.json' })[0]).toMatch(/exactly one of/);
    expect(problemsOf(noSecret)[0]).toMatch(/exactly one of/);
    expect(problemsOf({ ...noSecret, JWT_PUBLIC_KEY: 'not a key' })).toEqual(['JWT_PUBLIC_KEY: is not a PEM public key']);
    expect(problemsOf({ ...valid, JWT_ALGORITHMS: 'none' })[0]).toMatch(/JWT_ALGORITHMS/);
  });

  it('reads REDIS_URL, fail-open classes and per-client limits', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pv-limits-'));
    writeFileSync(join(dir, 'limits.json'), JSON.stringify({ 'acme/crm': { tokenize: '100/1s', detokenizeItems: '5000/1h' } }));
    const config = loadConfig({ ...valid, REDIS_URL: 'redis://cache:6379', RATE_LIMIT_FAIL_OPEN: '', RATE_LIMITS_FILE: join(dir, 'limits.json') });
    expect(config.redisUrl).toBe('redis://cache:6379');
    expect(config.rateLimits.failOpen).toEqual([]);
    expect(config.rateLimits.perClient).toEqual({ 'acme/crm': { classes: { tokenize: { max: 100, windowMs: 1000 } }, detokenizeItems: { max: 5000, windowMs: 3_600_000 } } });
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ acme: { tokenize: '1/1s' } }));
    expect(problemsOf({ ...valid, RATE_LIMITS_FILE: join(dir, 'bad.json') })[0]).toMatch(/RATE_LIMITS_FILE/);
    expect(problemsOf({ ...valid, REDIS_URL: 'http://cache' })).toEqual(['REDIS_URL: must be a redis:// or rediss:// URL']);
  });
});
