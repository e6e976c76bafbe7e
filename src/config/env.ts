import { readFileSync } from 'node:fs';

/**
 * All configuration comes from the environment, parsed once into a typed object that is passed down. Messages
 * name the variable, never a value.
 */
export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Secrets that may come from a file named by `<NAME>_FILE` instead. */
export const SECRETS = ['DATABASE_URL', 'VAULT_MASTER_KEY', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'REDIS_URL', 'PKCS11_PIN'] as const;
/** Settings that name a file whose contents are the value. */
const FILES = ['RATE_LIMITS_FILE', 'TLS_CERT_FILE', 'TLS_KEY_FILE'] as const;

/** The environment with every file read: `NAME` filled from `NAME_FILE`, and the named files' contents. */
export interface ReadEnv {
  env: Env;
  files: Partial<Record<(typeof FILES)[number], Buffer>>;
}

/**
 * Reads every file the environment names, before anything is parsed, so that parsing is pure. Setting both a
 * secret and its file is a mistake worth stopping for.
 */
export function readEnvFiles(env: Env, problems: string[]): ReadEnv {
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
  const files: ReadEnv['files'] = {};
  for (const name of FILES) {
    const file = env[name];
    if (file === undefined || file === '') continue;
    try {
      files[name] = readFileSync(file);
    } catch {
      problems.push(`${name}: cannot read the file it names`);
    }
  }
  return { env: resolved, files };
}
