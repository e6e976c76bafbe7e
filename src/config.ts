import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { parseMasterKeys, type MasterKey } from './crypto/master-keys.js';

/**
 * All configuration comes from the environment, parsed here once into a typed object that is passed down.
 * Every secret may instead come from a file named by `<NAME>_FILE`. Messages name the variable, never a value.
 */
export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface RateLimit {
  max: number;
  windowMs: number;
}

export type RateLimitClass = 'tokenize' | 'detokenize' | 'lookup' | 'admin';

export type JwtAlgorithm = 'HS256' | 'RS256' | 'ES256';

/** Exactly one way to verify: an HS256 secret, a PEM public key, or a JWKS URL. */
export type JwtVerification =
  | { kind: 'secret'; secret: Buffer }
  | { kind: 'publicKey'; publicKey: string }
  | { kind: 'jwks'; jwksUrl: string };

export interface JwtConfig {
  verification: JwtVerification;
  algorithms: JwtAlgorithm[];
  issuer: string;
  audience: string;
}

export interface JwtSigningConfig {
  secret: Buffer;
  issuer: string;
  audience: string;
}

/** Per-client budgets that differ from the defaults, keyed by `tenant/sub`. */
export interface ClientLimits {
  classes: Partial<Record<RateLimitClass, RateLimit>>;
  detokenizeItems?: RateLimit;
}

export interface RateLimitsConfig extends Record<RateLimitClass, RateLimit> {
  unauthenticated: RateLimit;
  detokenizeItems: RateLimit;
  perClient: Record<string, ClientLimits>;
  /** Classes that keep serving (unthrottled) while the shared counter store is unreachable. */
  failOpen: RateLimitClass[];
}

export interface Config {
  databaseUrl: string;
  masterKeys: MasterKey[];
  keyMaxEncryptions: number;
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
}

const SECRETS = ['DATABASE_URL', 'VAULT_MASTER_KEY', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'REDIS_URL'] as const;
const WINDOW_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const WEAK_SECRETS = ['change-me', 'changeme', 'secret', 'password'];

export const DEFAULT_RATE_LIMITS = {
  tokenize: '12000/1m',
  detokenize: '12000/1m',
  lookup: '1200/1m',
  admin: '60/1m',
  unauthenticated: '60/1m',
  detokenizeItems: '200000/1h',
} as const;

/** Fills `NAME` from the file named by `NAME_FILE`; setting both is a mistake worth stopping for. */
function resolveSecretFiles(env: Env, problems: string[]): Env {
  const resolved: Env = { ...env };
  for (const name of SECRETS) {
    const file = env[`${name}_FILE`];
    if (file === undefined || file === '') continue;
    if (env[name]) {
      problems.push(`${name} and ${name}_FILE are both set; set one`);
      continue;
    }
    try {
      resolved[name] = readFileSync(file, 'utf8').trim();
    } catch {
      problems.push(`${name}_FILE: cannot read the file it names`);
    }
  }
  return resolved;
}

export function parseRateLimit(text: string): RateLimit | null {
  const match = /^(\d+)\s*\/\s*(\d*)\s*(ms|s|m|h)$/.exec(text.trim());
  if (!match) return null;
  const max = Number(match[1]);
  const windowMs = Number(match[2] || '1') * WINDOW_UNITS[match[3]!]!;
  return max > 0 && windowMs > 0 ? { max, windowMs } : null;
}

const rateLimit = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const parsed = parseRateLimit(text);
      if (!parsed) ctx.addIssue({ code: 'custom', message: 'must look like <max>/<window>, e.g. 600/1m' });
      return parsed ?? { max: 1, windowMs: 1 };
    });

const integer = (fallback: number, min: number, max: number) =>
  z.coerce
    .number({ message: 'must be a whole number' })
    .int({ message: 'must be a whole number' })
    .min(min, { message: `must be at least ${min}` })
    .max(max, { message: `must be at most ${max}` })
    .default(fallback);

const required = z.string({ message: 'is required' }).min(1, { message: 'is required' });

const jwtSecret = required.transform((text, ctx) => {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length < 32) ctx.addIssue({ code: 'custom', message: 'must be at least 32 bytes' });
  else if (new Set(bytes).size < 10 || WEAK_SECRETS.some((weak) => text.toLowerCase().includes(weak))) {
    ctx.addIssue({ code: 'custom', message: 'is too weak: use 32 random bytes, e.g. `openssl rand -base64 48`' });
  }
  return bytes;
});

const masterKey = required.transform((text, ctx) => {
  try {
    return parseMasterKeys(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return [];
  }
});

const databaseUrl = required.refine((text) => /^postgres(ql)?:\/\//.test(text), {
  message: 'must be a postgres:// connection string',
});

const jwtSigningShape = {
  JWT_SECRET: jwtSecret,
  JWT_ISSUER: required,
  JWT_AUDIENCE: required,
};

const publicKeyPem = z.string().transform((text, ctx) => {
  try {
    const key = createPublicKey(text);
    if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      ctx.addIssue({ code: 'custom', message: 'an RSA key must have at least 2048 bits' });
    }
    return { pem: text, type: key.asymmetricKeyType };
  } catch {
    ctx.addIssue({ code: 'custom', message: 'is not a PEM public key' });
    return { pem: '', type: undefined };
  }
});

const ALGORITHMS = ['HS256', 'RS256', 'ES256'] as const;

const jwtVerifyShape = z
  .object({
    JWT_SECRET: z.string().optional(),
    JWT_PUBLIC_KEY: publicKeyPem.optional(),
    JWT_JWKS_URL: z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' }).optional(),
    JWT_ALGORITHMS: z
      .string()
      .transform((text) => text.split(',').map((part) => part.trim()).filter(Boolean))
      .pipe(z.array(z.enum(ALGORITHMS, { message: `may list only ${ALGORITHMS.join(', ')}` })).min(1))
      .optional(),
  })
  .transform((env, ctx) => {
    const configured = [env.JWT_SECRET, env.JWT_PUBLIC_KEY, env.JWT_JWKS_URL].filter((value) => value !== undefined && value !== '');
    if (configured.length !== 1) {
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'set exactly one of JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL' });
      return z.NEVER;
    }
    let verification: JwtVerification;
    let derived: JwtAlgorithm[];
    if (env.JWT_SECRET) {
      const secret = jwtSecret.safeParse(env.JWT_SECRET);
      if (!secret.success) {
        for (const issue of secret.error.issues) ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: issue.message });
        return z.NEVER;
      }
      verification = { kind: 'secret', secret: secret.data };
      derived = ['HS256'];
    } else if (env.JWT_PUBLIC_KEY) {
      verification = { kind: 'publicKey', publicKey: env.JWT_PUBLIC_KEY.pem };
      derived = env.JWT_PUBLIC_KEY.type === 'ec' ? ['ES256'] : ['RS256'];
    } else {
      verification = { kind: 'jwks', jwksUrl: env.JWT_JWKS_URL! };
      derived = ['RS256', 'ES256'];
    }
    const algorithms = env.JWT_ALGORITHMS ?? derived;
    // An HMAC algorithm next to a public key is the algorithm-confusion attack waiting to happen.
    const symmetric = verification.kind === 'secret';
    if (algorithms.some((alg) => alg.startsWith('HS') !== symmetric)) {
      ctx.addIssue({ code: 'custom', path: ['JWT_ALGORITHMS'], message: symmetric ? 'only HS256 goes with JWT_SECRET' : 'HS256 cannot be used with a public key or JWKS' });
      return z.NEVER;
    }
    return { verification, algorithms };
  });

const rateLimitsFile = z
  .string()
  .optional()
  .transform((file, ctx): Record<string, ClientLimits> => {
    if (!file) return {};
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      ctx.addIssue({ code: 'custom', message: 'cannot read the file as JSON' });
      return {};
    }
    const entry = z.strictObject({
      tokenize: z.string().optional(),
      detokenize: z.string().optional(),
      lookup: z.string().optional(),
      admin: z.string().optional(),
      detokenizeItems: z.string().optional(),
    });
    const parsed = z.record(z.string().regex(/^[^/]+\/.+$/), entry).safeParse(raw);
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', message: 'must map "tenant/sub" to {tokenize?, detokenize?, lookup?, admin?, detokenizeItems?}' });
      return {};
    }
    const out: Record<string, ClientLimits> = {};
    for (const [client, limits] of Object.entries(parsed.data)) {
      const classes: ClientLimits['classes'] = {};
      let detokenizeItems: RateLimit | undefined;
      for (const [name, text] of Object.entries(limits)) {
        const limit = text === undefined ? null : parseRateLimit(text);
        if (!limit) {
          ctx.addIssue({ code: 'custom', message: `"${client}".${name} must look like <max>/<window>` });
          continue;
        }
        if (name === 'detokenizeItems') detokenizeItems = limit;
        else classes[name as RateLimitClass] = limit;
      }
      out[client] = { classes, ...(detokenizeItems ? { detokenizeItems } : {}) };
    }
    return out;
  });

const fileContents = z
  .string()
  .optional()
  .transform((file, ctx) => {
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'cannot read the file it names' });
      return undefined;
    }
  });

const serveShape = z.object({
  DATABASE_URL: databaseUrl,
  VAULT_MASTER_KEY: masterKey,
  VAULT_KEY_MAX_ENCRYPTIONS: integer(2 ** 31, 1, 2 ** 32),
  JWT_ISSUER: required,
  JWT_AUDIENCE: required,
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: integer(8080, 0, 65_535),
  TRUST_PROXY: z
    .string()
    .default('')
    .transform((text) => text.split(',').map((part) => part.trim()).filter(Boolean))
    .refine((list) => !list.includes('true') && !list.includes('*'), { message: 'must list proxy addresses, never true' }),
  RATE_LIMIT_TOKENIZE: rateLimit(DEFAULT_RATE_LIMITS.tokenize),
  RATE_LIMIT_DETOKENIZE: rateLimit(DEFAULT_RATE_LIMITS.detokenize),
  RATE_LIMIT_LOOKUP: rateLimit(DEFAULT_RATE_LIMITS.lookup),
  RATE_LIMIT_ADMIN: rateLimit(DEFAULT_RATE_LIMITS.admin),
  RATE_LIMIT_UNAUTHENTICATED: rateLimit(DEFAULT_RATE_LIMITS.unauthenticated),
  DETOKENIZE_ITEMS_LIMIT: rateLimit(DEFAULT_RATE_LIMITS.detokenizeItems),
  RATE_LIMITS_FILE: rateLimitsFile,
  RATE_LIMIT_FAIL_OPEN: z
    .string()
    .default('tokenize')
    .transform((text) => text.split(',').map((part) => part.trim()).filter(Boolean))
    .pipe(z.array(z.enum(['tokenize', 'detokenize', 'lookup', 'admin'], { message: 'may list tokenize, detokenize, lookup, admin' }))),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, { message: 'must be a redis:// or rediss:// URL' })
    .optional(),
  TLS_CERT_FILE: fileContents,
  TLS_KEY_FILE: fileContents,
  BATCH_MAX: integer(1000, 1, 10_000),
  OFFLOAD_THREADS: integer(Math.min(4, Math.max(0, availableParallelism() - 1)), 0, 64),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { message: 'must be a pino level' }).default('info'),
  MIGRATE_ON_START: z.enum(['true', 'false'], { message: 'must be true or false' }).default('false'),
  SWEEP_INTERVAL: z
    .string()
    .optional()
    .transform((text, ctx) => {
      if (!text) return null;
      const parsed = parseRateLimit(`1/${text}`);
      if (!parsed || parsed.windowMs < 1000) ctx.addIssue({ code: 'custom', message: 'must be a duration of at least 1s, e.g. 5m' });
      return parsed?.windowMs ?? null;
    }),
});

function parseWith<S extends z.ZodType>(schema: S, env: Env): z.output<S> {
  const problems: string[] = [];
  const resolved = resolveSecretFiles(env, problems);
  const result = schema.safeParse(resolved);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(`${issue.path.join('.')}: ${issue.message}`);
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  return result.data;
}

export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const attempt = <T>(fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
      return undefined;
    }
  };
  const parsed = attempt(() => parseWith(serveShape, env));
  const jwt = attempt(() => parseWith(jwtVerifyShape, env));
  if (!parsed || !jwt) throw new ConfigError([...new Set(problems)]);
  if ((parsed.TLS_CERT_FILE === undefined) !== (parsed.TLS_KEY_FILE === undefined)) {
    throw new ConfigError(['TLS_CERT_FILE and TLS_KEY_FILE: set both or neither']);
  }
  // Room for a batch of BATCH_MAX numbers in generous human formatting, and no more.
  const bodyLimit = Math.max(64 * 1024, parsed.BATCH_MAX * 160);
  return {
    databaseUrl: parsed.DATABASE_URL,
    masterKeys: parsed.VAULT_MASTER_KEY,
    keyMaxEncryptions: parsed.VAULT_KEY_MAX_ENCRYPTIONS,
    jwt: { ...jwt, issuer: parsed.JWT_ISSUER, audience: parsed.JWT_AUDIENCE },
    host: parsed.HOST,
    port: parsed.PORT,
    trustProxy: parsed.TRUST_PROXY,
    rateLimits: {
      tokenize: parsed.RATE_LIMIT_TOKENIZE,
      detokenize: parsed.RATE_LIMIT_DETOKENIZE,
      lookup: parsed.RATE_LIMIT_LOOKUP,
      admin: parsed.RATE_LIMIT_ADMIN,
      unauthenticated: parsed.RATE_LIMIT_UNAUTHENTICATED,
      detokenizeItems: parsed.DETOKENIZE_ITEMS_LIMIT,
      perClient: parsed.RATE_LIMITS_FILE,
      failOpen: parsed.RATE_LIMIT_FAIL_OPEN,
    },
    redisUrl: parsed.REDIS_URL ?? null,
    tls: parsed.TLS_CERT_FILE && parsed.TLS_KEY_FILE ? { cert: parsed.TLS_CERT_FILE, key: parsed.TLS_KEY_FILE } : null,
    batchMax: parsed.BATCH_MAX,
    offloadThreads: parsed.OFFLOAD_THREADS,
    bodyLimit,
    logLevel: parsed.LOG_LEVEL,
    migrateOnStart: parsed.MIGRATE_ON_START === 'true',
    sweepIntervalMs: parsed.SWEEP_INTERVAL,
  };
}

export interface MaintenanceConfig {
  databaseUrl: string;
  masterKeys: MasterKey[];
  keyMaxEncryptions: number;
}

/** What the maintenance commands (rewrap, sweep, keys, tenant) need: the database and the master keys. */
export function loadMaintenanceConfig(env: Env): MaintenanceConfig {
  const parsed = parseWith(
    z.object({ DATABASE_URL: databaseUrl, VAULT_MASTER_KEY: masterKey, VAULT_KEY_MAX_ENCRYPTIONS: integer(2 ** 31, 1, 2 ** 32) }),
    env,
  );
  return { databaseUrl: parsed.DATABASE_URL, masterKeys: parsed.VAULT_MASTER_KEY, keyMaxEncryptions: parsed.VAULT_KEY_MAX_ENCRYPTIONS };
}

export function loadDatabaseUrl(env: Env): string {
  return parseWith(z.object({ DATABASE_URL: databaseUrl }), env).DATABASE_URL;
}

export function loadJwtSigning(env: Env): JwtSigningConfig {
  const parsed = parseWith(z.object(jwtSigningShape), env);
  return { secret: parsed.JWT_SECRET, issuer: parsed.JWT_ISSUER, audience: parsed.JWT_AUDIENCE };
}
