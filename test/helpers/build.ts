import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { createSigner } from 'fast-jwt';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp, type AppConfig, type AppDeps } from '../../src/app.js';
import { loadConfig, type Env } from '../../src/config/index.js';
import type { MasterKey } from '../../src/crypto/master-keys.js';
import { createTestDb, type TestDb } from './db.js';
import { recordLogLine } from './log-sink.js';
import { specViolation } from './spec.js';

export const ISSUER = 'https://issuer.test';
export const AUDIENCE = 'phonevault-test';
export const JWT_SECRET = randomBytes(48).toString('base64');
/** One master key for every app of a test file, so that apps sharing a database share its audit key too. */
export const MASTER_KEY = randomBytes(32).toString('base64');

export interface TestApp {
  app: FastifyInstance;
  testDb: TestDb;
  config: AppConfig;
  /** Every log line this app wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  rawLogs: string[];
  close(): Promise<void>;
}

/**
 * The app's configuration as the vault parses it from an environment (src/config), with a fresh master key and
 * the tests' issuer; `env` adds variables, `overrides` replaces parsed parts. Keys may rotate back to back.
 */
export type TestOverrides = Partial<AppConfig> & { /** KEK_PROVIDER=env with these keys. */ masterKeys?: MasterKey[] };

export function testConfig({ masterKeys, ...overrides }: TestOverrides = {}, env: Env = {}): AppConfig {
  const config = loadConfig({
    DATABASE_URL: 'postgres://unused/test',
    VAULT_MASTER_KEY: MASTER_KEY,
    JWT_SECRET,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    KEY_ROTATION_MIN_INTERVAL: '0s',
    OFFLOAD_THREADS: '0',
    ...env,
  });
  return { ...config, ...(masterKeys ? { kek: { providers: ['env'], masterKeys, pkcs11: null, awskms: null } } : {}), ...overrides };
}

/** The app on a fresh schema of the real test database, with its log lines captured. */
export async function build(overrides: TestOverrides = {}, existing?: TestDb, deps: Partial<Omit<AppDeps, 'db' | 'logger'>> = {}): Promise<TestApp> {
  const testDb = existing ?? (await createTestDb());
  const rawLogs: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        rawLogs.push(line);
        logs.push(JSON.parse(line));
        recordLogLine(line);
      }
      done();
    },
  });
  const config = testConfig(overrides);
  const logger = pino({ level: 'info' }, stream);
  const app = await buildApp(config, { db: testDb.db, logger, ...deps });
  await app.ready();
  checkAnswersAgainstSpec(app);
  return {
    app,
    testDb,
    config,
    logs,
    rawLogs,
    async close() {
      await app.close();
      if (!existing) await testDb.drop();
    },
  };
}

export interface TokenClaims {
  tenant?: string;
  sub?: string;
  scope?: string;
  [claim: string]: unknown;
}

/** A signed JWT as a real issuer would mint it; pass undefined in claims to leave a claim out. */
export function mintJwt(claims: TokenClaims = {}, options: { secret?: string; expiresInS?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'crm',
    tenant: 'acme',
    scope: 'tokenize detokenize',
    iat: now,
    exp: now + (options.expiresInS ?? 300),
    ...claims,
  };
  for (const key of Object.keys(payload)) if (payload[key] === undefined) delete payload[key];
  // The signer adds an iat of its own unless told not to: a test that leaves iat out gets a token without one.
  return createSigner({ key: options.secret ?? JWT_SECRET, algorithm: 'HS256', noTimestamp: !('iat' in payload) })(payload);
}

export const bearer = (claims: TokenClaims = {}) => ({ authorization: `Bearer ${mintJwt(claims)}` });

/** Every answer `inject` hands a test has first been checked against openapi.yaml; one outside it fails the call. */
function checkAnswersAgainstSpec(app: FastifyInstance): void {
  const inject = app.inject.bind(app) as (options?: unknown, callback?: unknown) => unknown;
  (app as unknown as { inject: typeof inject }).inject = (options, callback) => {
    if (options === undefined || callback !== undefined) return inject(options, callback);
    const { method = 'GET', url = '/' } = (typeof options === 'string' ? { url: options } : options) as { method?: string; url?: string };
    return (inject(options) as Promise<{ statusCode: number; headers: Record<string, unknown>; body: string }>).then((answer) => {
      const violation = specViolation(method.toUpperCase(), url, answer);
      if (violation) throw new Error(`an answer outside openapi.yaml: ${violation}`);
      return answer;
    });
  };
}

/** A fresh tenant or client name: random letters only, so that no run of digits in it can read as a phone number. */
export const uniqueName = (prefix: string) => prefix + randomBytes(8).toString('hex').replace(/\d/g, (digit) => 'ghijklmnop'[Number(digit)]!);
