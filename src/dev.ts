import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig, type Env, type JwtSigningConfig } from './config/index.js';
import { SCOPES } from './identity.js';
import { mintJwt } from './jwt-mint.js';
import { createLogger } from './logger.js';
import { closeOnSignals, startServer } from './server.js';
import { createEmbeddedDb } from './store/embedded-db.js';

const DEV_ISSUER = 'phonevault-dev';
const DEV_TENANT = 'dev';
const TOKEN_TTL_SECONDS = 24 * 3600;

interface DevSecrets {
  masterKey: string;
  jwtSecret: string;
}

/**
 * The signing settings of the dev vault whose data folder this is (`phonevault token` uses them when JWT_SECRET
 * is not set), or null when no dev vault has run there.
 */
export function devSigning(dataDir: string | undefined): JwtSigningConfig | null {
  const file = join(resolve(dataDir ?? '.phonevault'), 'dev-secrets.json');
  if (!existsSync(file)) return null;
  const secrets = JSON.parse(readFileSync(file, 'utf8')) as DevSecrets;
  return { secret: Buffer.from(secrets.jwtSecret), issuer: DEV_ISSUER, audience: DEV_ISSUER };
}

/** Generated on the first run and kept (mode 0600) so that tokens survive restarts. */
function loadOrCreateSecrets(dataDir: string): DevSecrets {
  const file = join(dataDir, 'dev-secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DevSecrets;
  const secrets = { masterKey: randomBytes(32).toString('base64'), jwtSecret: randomBytes(48).toString('base64') };
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return secrets;
}

/**
 * The data folder holds keys and an unencrypted database: 0700 for folders and 0600 for files, whatever existed
 * before (a folder made by hand, files copied in). Links inside are left alone, never followed.
 */
function lockDown(path: string): void {
  const stat = lstatSync(path);
  if (stat.isSymbolicLink()) return;
  if (stat.isDirectory()) {
    chmodSync(path, 0o700);
    for (const entry of readdirSync(path)) lockDown(join(path, entry));
  } else {
    chmodSync(path, 0o600);
  }
}

/**
 * One dev process per data folder: two embedded Postgres instances on one folder would corrupt it. A lock file
 * left by a process that no longer runs is taken over.
 */
function lockDataDir(dataDir: string): () => void {
  const file = join(dataDir, 'dev.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      const release = () => rmSync(file, { force: true });
      process.once('exit', release);
      return release;
    } catch {
      const holder = Number(readFileSync(file, 'utf8'));
      let alive = false;
      try {
        process.kill(holder, 0);
        alive = holder !== process.pid;
      } catch {
        alive = false;
      }
      if (alive) throw new ConfigError([`another phonevault dev (pid ${holder}) is using ${dataDir}; stop it or set PHONEVAULT_DATA_DIR`]);
      rmSync(file, { force: true });
    }
  }
  throw new ConfigError([`cannot lock ${dataDir}`]);
}

/**
 * Zero-set-up development mode: an embedded Postgres under a data folder (or DATABASE_URL when set), a
 * development master key and JWT secret kept there, migrations applied, 127.0.0.1 only, and ready-to-paste
 * shell lines with a token for every scope.
 */
export async function runDev(env: Env, out: (text: string) => void): Promise<void> {
  const dataDir = resolve(env.PHONEVAULT_DATA_DIR ?? '.phonevault');
  // Whatever the embedded database creates later (new WAL segments, files of new tables) is private too.
  process.umask(0o077);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // The folder named is locked down even when its name is a link; links inside it are never followed.
  lockDown(realpathSync(dataDir));
  lockDataDir(dataDir);
  const secrets = loadOrCreateSecrets(dataDir);
  const config = loadConfig({
    LOG_LEVEL: env.LOG_LEVEL,
    PORT: env.PORT,
    DATABASE_URL: env.DATABASE_URL ?? 'postgres://embedded/phonevault',
    VAULT_MASTER_KEY: secrets.masterKey,
    JWT_SECRET: secrets.jwtSecret,
    JWT_ISSUER: DEV_ISSUER,
    JWT_AUDIENCE: DEV_ISSUER,
    HOST: '127.0.0.1',
    MIGRATE_ON_START: 'true',
  });
  const logger = createLogger(config.logLevel);
  const db = env.DATABASE_URL ? undefined : await createEmbeddedDb(join(dataDir, 'pgdata'));
  const server = await startServer(config, logger, db);
  closeOnSignals(server, logger);

  const signing = devSigning(dataDir)!;
  const token = (scope: string) => mintJwt(signing, { tenant: DEV_TENANT, sub: 'dev', scope }, TOKEN_TTL_SECONDS);
  const lines = [
    '',
    '#################################################################################',
    '#  phonevault DEVELOPMENT MODE — NOT FOR PRODUCTION                             #',
    '#  Keys and data live unprotected in the data folder; use `phonevault serve`.   #',
    '#################################################################################',
    `# data folder: ${dataDir}${db ? ' (embedded Postgres)' : ' (DATABASE_URL)'}`,
    `# tokens below: tenant "${DEV_TENANT}", valid for 24 hours; paste these lines into your shell:`,
    `export PHONEVAULT_URL=${server.url}`,
    `export PHONEVAULT_TOKEN=${token(SCOPES.join(' '))}`,
    ...SCOPES.map((scope) => `export PHONEVAULT_TOKEN_${scope.replace(':', '_').toUpperCase()}=${token(scope)}`),
    '# then:',
    `#   curl -s -X POST "$PHONEVAULT_URL/v1/tokenize" -H "authorization: Bearer $PHONEVAULT_TOKEN" \\`,
    `#        -H 'content-type: application/json' -d '{"phone":"+1 201 555 0123"}'`,
    '',
  ];
  out(lines.join('\n'));
}
