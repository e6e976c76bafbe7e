import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { isVaultError } from './errors.js';
import { ConfigError, loadConfig, loadDatabaseUrl, loadJwtSigning, type Env } from './config/index.js';
import { auditCommand, keysCommand, rewrapCommand, sweepCommand, tenantCommand } from './cli-maintenance.js';
import { runDev } from './dev.js';
import { mintJwt } from './jwt-mint.js';
import { createLogger } from './logger.js';
import { closeOnSignals, startServer } from './server.js';
import { createPgDb } from './store/db.js';
import { MasterKeyMismatch } from './store/master-key-guard.js';
import { migrate } from './store/migrate.js';

const USAGE = `usage: phonevault <command>

  dev                   run the vault for development: embedded Postgres, generated keys, printed tokens
  serve                 run the vault (needs DATABASE_URL, VAULT_MASTER_KEY, JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE)
  migrate               apply pending database migrations (needs DATABASE_URL)
  keygen                print a new random master key (base64 of 32 bytes)
  token --tenant T --sub S --scope "tokenize detokenize" [--ttl 1h]
                        mint an HS256 JWT from JWT_SECRET, for development and tests
  rewrap [--tenant T] [--batch-size N]
                        move tokens from older data key versions to the active one, online
  keys destroy --tenant T --version N
                        destroy a retired data key version that no token uses any more
  keys rewrap-master    re-wrap every data key under the active (first) master key
  sweep                 delete expired tokens
  tenant destroy T --yes
                        crypto-shred a tenant: destroy its keys and delete its tokens
  audit verify [--tenant T] [--checkpoints FILE]
                        check every tenant's audit chain, and that it reaches the signed checkpoints in FILE (log
                        lines; - for standard input); names the first edited, removed or moved event
  audit seal [--tenant T]
                        sign the start of chains written before the keyed chain, once checked (after an upgrade)
  audit prune --before YYYY-MM
                        drop audit events from before that month (the only deletion the audit table allows)
  (the maintenance commands need DATABASE_URL and VAULT_MASTER_KEY)
`;

const TTL = /^(\d+)(s|m|h|d)$/;
const TTL_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

type Out = (text: string) => void;

async function serve(env: Env): Promise<number> {
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel);
  const server = await startServer(config, logger);
  closeOnSignals(server, logger);
  // Resolves only when a signal closes the server and exits the process.
  await new Promise(() => {});
  return 0;
}

async function migrateCommand(env: Env, out: Out): Promise<number> {
  const db = createPgDb({ connectionString: loadDatabaseUrl(env) });
  try {
    const applied = await migrate(db);
    out(applied.length > 0 ? `applied ${applied.join(', ')}` : 'database is up to date');
    return 0;
  } finally {
    await db.close();
  }
}

function token(args: string[], env: Env, out: Out): number {
  const { values } = parseArgs({
    args,
    options: { tenant: { type: 'string' }, sub: { type: 'string' }, scope: { type: 'string' }, ttl: { type: 'string', default: '1h' } },
  });
  const ttl = TTL.exec(values.ttl);
  if (!values.tenant || !values.sub || values.scope === undefined || !ttl) {
    throw new ConfigError(['token needs --tenant, --sub and --scope, and --ttl like 15m, 1h or 7d']);
  }
  out(mintJwt(loadJwtSigning(env), { tenant: values.tenant, sub: values.sub, scope: values.scope }, Number(ttl[1]) * TTL_SECONDS[ttl[2]!]!));
  return 0;
}

export async function main(argv: string[], env: Env, out: Out = (t) => console.log(t), err: Out = (t) => console.error(t)): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(env);
      case 'dev':
        await runDev(env, out);
        await new Promise(() => {});
        return 0;
      case 'migrate':
        return await migrateCommand(env, out);
      case 'keygen':
        out(randomBytes(32).toString('base64'));
        return 0;
      case 'token':
        return token(rest, env, out);
      case 'rewrap':
        return await rewrapCommand(rest, env, out);
      case 'keys':
        return await keysCommand(rest, env, out);
      case 'sweep':
        return await sweepCommand(env, out);
      case 'tenant':
        return await tenantCommand(rest, env, out, err);
      case 'audit':
        return await auditCommand(rest, env, out);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        err(`phonevault: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof ConfigError || error instanceof MasterKeyMismatch || isVaultError(error)) {
      err(`phonevault: ${error.message}`);
      return 2;
    }
    // Only the class and code: a driver message can quote a connection string or a value.
    const { name, code } = error as { name?: string; code?: string };
    const hint =
      code === 'EADDRINUSE'
        ? ': the port is taken; set PORT'
        : code && /^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|28P01|3D000)$/.test(code)
          ? ': cannot reach the database named by DATABASE_URL'
          : '';
    err(`phonevault: ${command} failed (${name ?? 'Error'}${code ? ` ${code}` : ''})${hint}`);
    return 1;
  }
}
