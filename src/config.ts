import { readFileSync } from 'node:fs';
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

export interface JwtConfig {
  secret: Buffer;
  algorithms: ['HS256'];
  issuer: string;
  audience: string;
}

export interface Config {
  databaseUrl: string;
  masterKeys: MasterKey[];
  keyMaxEncryptions: number;
  jwt: JwtConfig;
  host: string;
  port: number;
  trustProxy: string[];
  rateLimits: Record<RateLimitClass, RateLimit> & { unauthenticated: RateLimit };
  batchMax: number;
  bodyLimit: number;
  logLevel: string;
  migrateOnStart: boolean;
}

const SECRETS = ['DATABASE_URL', 'VAULT_MASTER_KEY', 'JWT_SECRET'] as const;
const WINDOW_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const WEAK_SECRETS = ['change-me', 'changeme', 'secret', 'password'];

export const DEFAULT_RATE_LIMITS = {
  tokenize: '12000/1m',
  detokenize: '12000/1m',
  lookup: '1200/1m',
  admin: '60/1m',
  unauthenticated: '60/1m',
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

const jwtShape = {
  JWT_SECRET: jwtSecret,
  JWT_ISSUER: required,
  JWT_AUDIENCE: required,
  JWT_ALGORITHMS: z.literal('HS256', { message: 'only HS256 is supported with JWT_SECRET' }).default('HS256'),
};

const serveShape = z.object({
  DATABASE_URL: databaseUrl,
  VAULT_MASTER_KEY: masterKey,
  VAULT_KEY_MAX_ENCRYPTIONS: integer(2 ** 31, 1, 2 ** 32),
  ...jwtShape,
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
  BATCH_MAX: integer(1000, 1, 10_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { message: 'must be a pino level' }).default('info'),
  MIGRATE_ON_START: z.enum(['true', 'false'], { message: 'must be true or false' }).default('false'),
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
  const parsed = parseWith(serveShape, env);
  // Room for a batch of BATCH_MAX numbers in generous human formatting, and no more.
  const bodyLimit = Math.max(64 * 1024, parsed.BATCH_MAX * 160);
  return {
    databaseUrl: parsed.DATABASE_URL,
    masterKeys: parsed.VAULT_MASTER_KEY,
    keyMaxEncryptions: parsed.VAULT_KEY_MAX_ENCRYPTIONS,
    jwt: { secret: parsed.JWT_SECRET, algorithms: ['HS256'], issuer: parsed.JWT_ISSUER, audience: parsed.JWT_AUDIENCE },
    host: parsed.HOST,
    port: parsed.PORT,
    trustProxy: parsed.TRUST_PROXY,
    rateLimits: {
      tokenize: parsed.RATE_LIMIT_TOKENIZE,
      detokenize: parsed.RATE_LIMIT_DETOKENIZE,
      lookup: parsed.RATE_LIMIT_LOOKUP,
      admin: parsed.RATE_LIMIT_ADMIN,
      unauthenticated: parsed.RATE_LIMIT_UNAUTHENTICATED,
    },
    batchMax: parsed.BATCH_MAX,
    bodyLimit,
    logLevel: parsed.LOG_LEVEL,
    migrateOnStart: parsed.MIGRATE_ON_START === 'true',
  };
}

export function loadDatabaseUrl(env: Env): string {
  return parseWith(z.object({ DATABASE_URL: databaseUrl }), env).DATABASE_URL;
}

export function loadJwtSigning(env: Env): JwtConfig {
  const parsed = parseWith(z.object(jwtShape), env);
  return { secret: parsed.JWT_SECRET, algorithms: ['HS256'], issuer: parsed.JWT_ISSUER, audience: parsed.JWT_AUDIENCE };
}
