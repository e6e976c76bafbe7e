import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { DEFAULT_PURPOSES, PURPOSE_NAME } from '../audit/purpose.js';
import { ConfigError, readEnvFiles, type Env } from './env.js';
import { kekConfigOf, kekShape, type KekConfig, type Pkcs11Settings } from './kek.js';
import { jwtClaimsShape, jwtSigningShape, jwtVerificationShape, type JwtConfig, type JwtSigningConfig } from './jwt.js';
import { limitsShape, rateLimitsOf, type RateLimitsConfig } from './limits.js';
import { duration, integer, list, required } from './values.js';

export { ConfigError, type Env } from './env.js';
export type { AwsKmsSettings, KekConfig, Pkcs11Settings } from './kek.js';
export type { JwtAlgorithm, JwtConfig, JwtSigningConfig, JwtVerification } from './jwt.js';
export { DEFAULT_RATE_LIMITS, defaultRateLimits, type ClientLimits, type RateLimitClass, type RateLimitsConfig } from './limits.js';
export { parseDuration, parseRateLimit, type RateLimit } from './values.js';

export interface AuditConfig {
  /** The reasons a caller may give in `x-purpose`. */
  purposes: ReadonlySet<string>;
  /** A signed head checkpoint goes to the log after this many events of a tenant… */
  checkpointEvents: number;
  /** …or this long after its head last moved, whichever comes first. */
  checkpointIntervalMs: number;
}

export interface Config {
  databaseUrl: string;
  /** The key-encryption keys' providers and settings (KEK_PROVIDER). */
  kek: KekConfig;
  keyMaxEncryptions: number;
  /** A data key younger than this is not rotated again on request. */
  keyRotationMinIntervalMs: number;
  jwt: JwtConfig;
  host: string;
  port: number;
  trustProxy: string[];
  rateLimits: RateLimitsConfig;
  redisUrl: string | null;
  tls: { cert: Buffer; key: Buffer } | null;
  batchMax: number;
  /** Worker threads for large batches' parsing and cryptography (src/vault/offload.ts); 0 keeps it all inline. */
  offloadThreads: number;
  bodyLimit: number;
  logLevel: string;
  migrateOnStart: boolean;
  /** How often the process deletes expired tokens by itself; null leaves it to `phonevault sweep`. */
  sweepIntervalMs: number | null;
  audit: AuditConfig;
  /** Whether `Bearer pvk_…` API keys are accepted and managed (`API_KEYS`, on by default). */
  apiKeys: boolean;
}

const databaseUrl = required.refine((text) => /^postgres(ql)?:\/\//.test(text), { message: 'must be a postgres:// connection string' });

// The KEK settings are parsed on their own (parseKek), with their cross-checks.
const keyShape = {
  VAULT_KEY_MAX_ENCRYPTIONS: integer(2 ** 31, 1, 2 ** 32),
};

const serveShape = z.object({
  DATABASE_URL: databaseUrl,
  ...keyShape,
  KEY_ROTATION_MIN_INTERVAL: duration('1m'),
  ...jwtClaimsShape,
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: integer(8080, 0, 65_535),
  TRUST_PROXY: list('').refine((proxies) => !proxies.includes('true') && !proxies.includes('*'), { message: 'must list proxy addresses, never true' }),
  ...limitsShape,
  REDIS_URL: z.string().regex(/^rediss?:\/\//, { message: 'must be a redis:// or rediss:// URL' }).optional(),
  TLS_CERT_FILE: z.instanceof(Buffer).optional(),
  TLS_KEY_FILE: z.instanceof(Buffer).optional(),
  BATCH_MAX: integer(1000, 1, 10_000),
  OFFLOAD_THREADS: integer(Math.min(4, Math.max(0, availableParallelism() - 1)), 0, 64),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { message: 'must be a pino level' }).default('info'),
  MIGRATE_ON_START: z.enum(['true', 'false'], { message: 'must be true or false' }).default('false'),
  API_KEYS: z.enum(['on', 'off'], { message: 'must be on or off' }).default('on'),
  SWEEP_INTERVAL: duration('10m')
    .transform((ms) => (ms === 0 ? null : ms))
    .refine((ms) => ms === null || ms >= 1_000, { message: 'must be a duration of at least 1s, e.g. 5m' }),
  AUDIT_PURPOSES: list(DEFAULT_PURPOSES.join(',')).pipe(
    z.array(z.string().regex(PURPOSE_NAME, { message: 'each purpose is 1-32 of a-z, 0-9 and -, starting with a letter' })).min(1, { message: 'list at least one purpose' }),
  ),
  AUDIT_CHECKPOINT_EVENTS: integer(1_000, 1, 1_000_000),
  AUDIT_CHECKPOINT_INTERVAL: duration('1m', 1_000),
});

/** Parses `shape` over the environment with its files read first; every problem is collected and thrown at once. */
function parseWith<S extends z.ZodType>(schema: S, env: Env): z.output<S> {
  const problems: string[] = [];
  const { env: resolved, files } = readEnvFiles(env, problems);
  const result = schema.safeParse({ ...resolved, ...files });
  if (!result.success) for (const issue of result.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  if (problems.length > 0 || !result.success) throw new ConfigError([...new Set(problems)]);
  return result.data;
}

function collect<T>(problems: string[], fn: () => T): T | undefined {
  try {
    return fn();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
    return undefined;
  }
}

/** The KEK providers and their settings, every problem with them at once. */
function parseKek(env: Env): KekConfig {
  const parsed = parseWith(z.object(kekShape), env);
  const problems: string[] = [];
  const kek = kekConfigOf(parsed, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return kek;
}

export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const parsed = collect(problems, () => parseWith(serveShape, env));
  const verification = collect(problems, () => parseWith(jwtVerificationShape, env));
  const kek = collect(problems, () => parseKek(env));
  if (!parsed || !verification || !kek) throw new ConfigError([...new Set(problems)]);
  if ((parsed.TLS_CERT_FILE === undefined) !== (parsed.TLS_KEY_FILE === undefined)) throw new ConfigError(['TLS_CERT_FILE and TLS_KEY_FILE: set both or neither']);
  // Room for a batch of BATCH_MAX numbers in generous human formatting, and no more.
  const bodyLimit = Math.max(64 * 1024, parsed.BATCH_MAX * 160);
  return {
    databaseUrl: parsed.DATABASE_URL,
    kek,
    keyMaxEncryptions: parsed.VAULT_KEY_MAX_ENCRYPTIONS,
    keyRotationMinIntervalMs: parsed.KEY_ROTATION_MIN_INTERVAL,
    jwt: {
      ...verification,
      issuer: parsed.JWT_ISSUER,
      audience: parsed.JWT_AUDIENCE,
      clockLeewayMs: parsed.JWT_CLOCK_LEEWAY,
      maxLifetimeMs: parsed.JWT_MAX_LIFETIME,
    },
    host: parsed.HOST,
    port: parsed.PORT,
    trustProxy: parsed.TRUST_PROXY,
    rateLimits: rateLimitsOf(parsed),
    redisUrl: parsed.REDIS_URL ?? null,
    tls: parsed.TLS_CERT_FILE && parsed.TLS_KEY_FILE ? { cert: parsed.TLS_CERT_FILE, key: parsed.TLS_KEY_FILE } : null,
    batchMax: parsed.BATCH_MAX,
    offloadThreads: parsed.OFFLOAD_THREADS,
    bodyLimit,
    logLevel: parsed.LOG_LEVEL,
    migrateOnStart: parsed.MIGRATE_ON_START === 'true',
    sweepIntervalMs: parsed.SWEEP_INTERVAL,
    audit: { purposes: new Set(parsed.AUDIT_PURPOSES), checkpointEvents: parsed.AUDIT_CHECKPOINT_EVENTS, checkpointIntervalMs: parsed.AUDIT_CHECKPOINT_INTERVAL },
    apiKeys: parsed.API_KEYS === 'on',
  };
}

export interface MaintenanceConfig {
  databaseUrl: string;
  kek: KekConfig;
  keyMaxEncryptions: number;
}

/** What the maintenance commands (rewrap, sweep, keys, tenant, audit) need: the database and the master keys. */
export function loadMaintenanceConfig(env: Env): MaintenanceConfig {
  const problems: string[] = [];
  const parsed = collect(problems, () => parseWith(z.object({ DATABASE_URL: databaseUrl, ...keyShape }), env));
  const kek = collect(problems, () => parseKek(env));
  if (!parsed || !kek) throw new ConfigError([...new Set(problems)]);
  return { databaseUrl: parsed.DATABASE_URL, kek, keyMaxEncryptions: parsed.VAULT_KEY_MAX_ENCRYPTIONS };
}

/** The PKCS#11 settings alone, for `phonevault kek create` (whatever KEK_PROVIDER says). */
export function loadPkcs11Settings(env: Env): Pkcs11Settings {
  const { pkcs11 } = parseKek({ ...env, KEK_PROVIDER: 'pkcs11', VAULT_MASTER_KEY: undefined, VAULT_MASTER_KEY_FILE: undefined });
  return pkcs11!;
}

export function loadDatabaseUrl(env: Env): string {
  return parseWith(z.object({ DATABASE_URL: databaseUrl }), env).DATABASE_URL;
}

export function loadJwtSigning(env: Env): JwtSigningConfig {
  const parsed = parseWith(jwtSigningShape, env);
  return { secret: parsed.JWT_SECRET, issuer: parsed.JWT_ISSUER, audience: parsed.JWT_AUDIENCE };
}
