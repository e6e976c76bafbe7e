import { randomBytes } from 'node:crypto';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { apiKeyCommands } from './cli-apikeys.js';
import { importCommand, type ImportCommandOptions } from './cli-import.js';
import {
  auditPruneCommand,
  auditSealCommand,
  auditVerifyCommand,
  destroyKeyCommand,
  destroyTenantCommand,
  rewrapCommand,
  rewrapMasterCommand,
  sweepCommand,
  type Io,
} from './cli-maintenance.js';
import { ConfigError, loadConfig, loadDatabaseUrl, loadJwtSigning, loadPkcs11Settings, parseDuration, type Env } from './config/index.js';
import { KekSetupError } from './crypto/kek.js';
import { devSigning, runDev } from './dev.js';
import { isVaultError } from './errors.js';
import { mintJwt } from './jwt-mint.js';
import { createLogger } from './logger.js';
import { closeOnSignals, startServer } from './server.js';
import { createPgDb, type Db } from './store/db.js';
import { MasterKeyMismatch } from './store/master-key-guard.js';
import { NotDistributable, PLACEMENT, placeTables } from './store/distribute.js';
import { migrate } from './store/migrate.js';

/** Exit codes: 2 for a command line that cannot be run as written, 78 (EX_CONFIG) for a configuration refused. */
const USAGE_ERROR = 2;
const CONFIG_ERROR = 78;

const forever = () => new Promise<never>(() => {});

function wholeNumber(min: number, max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    return n;
  };
}

function seconds(text: string): number {
  const ms = parseDuration(text);
  if (ms === null || ms < 1000) throw new InvalidArgumentError('must be a duration such as 15m, 1h or 7d');
  return ms / 1000;
}

function region(text: string): string {
  if (!/^[A-Za-z]{2}$/.test(text)) throw new InvalidArgumentError('must be an ISO 3166 alpha-2 region, e.g. US');
  return text.toUpperCase();
}

function month(text: string): Date {
  const match = /^(\d{4})-(\d{2})$/.exec(text);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 12) throw new InvalidArgumentError('must be a month, YYYY-MM; events before its first day (UTC) are dropped');
  return new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1));
}

/** The command line; `run` sets the exit code an action answers. */
function program(env: Env, io: Io, run: (code: Promise<number> | number) => void): Command {
  const cli = new Command('phonevault')
    .description('A tokenization vault for phone numbers.')
    .usage('<command> [options]')
    .addHelpText('after', '\nConfiguration comes from the environment (see the README); flags override it where a command has them.\nExit codes: 0 done, 1 a check failed, 2 a usage error, 78 a configuration refused.')
    .showHelpAfterError('(phonevault --help lists the commands)')
    .exitOverride()
    .configureOutput({ writeOut: (text) => io.out(text.trimEnd()), writeErr: (text) => io.err(text.trimEnd()) });

  cli
    .command('dev')
    .description('run the vault for development: embedded Postgres, generated keys, printed tokens (not for production)')
    .option('--port <port>', 'listen on this port (PORT)', wholeNumber(0, 65_535))
    .option('--data-dir <dir>', 'keep the embedded database and dev keys here (PHONEVAULT_DATA_DIR)')
    .action(async (options: { port?: number; dataDir?: string }) => {
      await runDev({ ...env, ...(options.port !== undefined ? { PORT: String(options.port) } : {}), ...(options.dataDir ? { PHONEVAULT_DATA_DIR: options.dataDir } : {}) }, io.out);
      run(forever());
    });

  cli
    .command('serve')
    .description('run the vault (needs DATABASE_URL, VAULT_MASTER_KEY, JWT verification settings)')
    .option('--host <host>', 'listen on this address (HOST)')
    .option('--port <port>', 'listen on this port (PORT)', wholeNumber(0, 65_535))
    .action(async (options: { host?: string; port?: number }) => {
      const config = loadConfig({ ...env, ...(options.host ? { HOST: options.host } : {}), ...(options.port !== undefined ? { PORT: String(options.port) } : {}) });
      const logger = createLogger(config.logLevel);
      closeOnSignals(await startServer(config, logger), logger);
      run(forever());
    });

  /** Runs a command that places tables on DATABASE_URL: exit 0, or 1 with the reason a table cannot be placed. */
  const placing = async (command: string, queryTimeoutMs: number, work: (db: Db) => Promise<void>) => {
    const db = createPgDb({ connectionString: loadDatabaseUrl(env), queryTimeoutMs });
    try {
      await work(db);
      run(0);
    } catch (error) {
      if (!(error instanceof NotDistributable)) throw error;
      io.err(`phonevault ${command}: ${error.message}`);
      run(1);
    } finally {
      await db.close();
    }
  };

  cli
    .command('migrate')
    .description('apply pending database migrations (needs DATABASE_URL)')
    .action(async () => {
      // A distributed database's new table that the vault cannot place is refused: nothing was applied.
      await placing('migrate', 60_000, async (db) => {
        const applied = await migrate(db);
        io.out(applied.length > 0 ? `applied ${applied.join(', ')}` : 'database is up to date');
      });
    });

  cli
    .command('distribute')
    .description('distribute a migrated database on a Citus coordinator by tenant (needs DATABASE_URL)')
    .action(async () => {
      await placing('distribute', 600_000, async (db) => {
        const done = await db.transact((tx) => placeTables(tx));
        io.out(done.distributed.length > 0 ? `distributed by tenant: ${done.distributed.join(', ')}; kept on the coordinator: ${PLACEMENT.coordinator.join(', ')}` : 'already distributed');
      });
    });

  cli
    .command('keygen')
    .description('print a new random master key (base64 of 32 bytes)')
    .action(() => {
      io.out(randomBytes(32).toString('base64'));
      run(0);
    });

  const kek = cli.command('kek').description('the key-encryption key in an HSM (KEK_PROVIDER=pkcs11)');
  kek
    .command('create')
    .description('create the AES-256 KEK inside the HSM named by PKCS11_*: sensitive, never extractable')
    .action(async () => {
      const { createPkcs11Kek } = await import('./crypto/pkcs11-kek.js');
      const settings = loadPkcs11Settings(env);
      await createPkcs11Kek(settings);
      io.out(`created the AES-256 key "${settings.keyLabel}" on the token (sensitive, not extractable); start the vault with KEK_PROVIDER=pkcs11`);
      run(0);
    });

  cli
    .command('token')
    .description("mint an HS256 JWT from JWT_SECRET, or from the dev vault's own secret when JWT_SECRET is not set")
    .requiredOption('--tenant <tenant>', 'the tenant claim')
    .requiredOption('--sub <sub>', 'the calling application (sub claim)')
    .requiredOption('--scope <scopes>', 'space-separated scopes, e.g. "tokenize detokenize"')
    .option('--ttl <duration>', 'lifetime, e.g. 15m, 1h, 7d', seconds, 3600)
    .action((options: { tenant: string; sub: string; scope: string; ttl: number }) => {
      const signing = env.JWT_SECRET || env.JWT_SECRET_FILE ? loadJwtSigning(env) : devSigning(env.PHONEVAULT_DATA_DIR);
      if (!signing) throw new ConfigError(['JWT_SECRET: is required (or run `phonevault dev` in this folder first, whose secret `token` then uses)']);
      io.out(mintJwt(signing, { tenant: options.tenant, sub: options.sub, scope: options.scope }, options.ttl));
      run(0);
    });

  cli
    .command('rewrap')
    .description('move tokens from older data key versions to the active one, online')
    .option('--tenant <tenant>', 'only this tenant')
    .option('--batch-size <n>', 'tokens a statement', wholeNumber(1, 10_000), 500)
    .action((options: { tenant?: string; batchSize: number }) => run(rewrapCommand(options, env, io)));

  cli
    .command('import')
    .description('tokenize existing numbers in bulk: a CSV or NDJSON file (or standard input), or a Postgres table; resumable')
    .requiredOption('--tenant <tenant>', 'the tenant the tokens belong to')
    .option('--input <file>', 'the CSV or NDJSON file (- or none: standard input)')
    .option('--output <file>', 'where the rows go with tokens in place of numbers (- or none: standard output, which cannot be resumed)')
    .option('--column <name>', 'CSV: the header column holding the numbers; with --table, the table column')
    .option('--field <name>', 'NDJSON: the top-level field holding the numbers')
    .option('--table <name>', 'a table of the source database (schema.table)')
    .option('--key <column>', 'with --table: its primary key, read in order')
    .option('--token-column <column>', 'with --table: write each token into this column of the same row')
    .option('--replace', 'with --table: write each token over the number itself', false)
    .option('--source-url <url>', 'with --table: the source database (default DATABASE_URL)')
    .option('--country <cc>', 'the region of numbers written without their country code', region)
    .option('--deterministic', 'one token per number', false)
    .addOption(new Option('--format <format>', 'opaque (tok_…) or phone-shaped (+28…)').choices(['opaque', 'phone']).default('opaque'))
    .option('--batch-size <n>', 'rows per batch (one transaction and one audit event each)', wholeNumber(1, 5_000), 1000)
    .option('--restart', 'forget an earlier run with the same arguments, finished or interrupted, and start again (a table\'s rows that hold tokens stay skipped)', false)
    .action((options: ImportCommandOptions) => run(importCommand(options, env, io)));

  const keys = cli.command('keys').description('data and master key maintenance');
  keys
    .command('destroy')
    .description('destroy a retired data key version that no token uses any more')
    .requiredOption('--tenant <tenant>', 'the tenant')
    .requiredOption('--version <n>', 'the version', wholeNumber(1, 2 ** 31 - 1))
    .action((options: { tenant: string; version: number }) => run(destroyKeyCommand(options, env, io)));
  keys
    .command('rewrap-master')
    .description('re-wrap every data key under the active (first) master key')
    .action(() => run(rewrapMasterCommand(env, io)));

  cli
    .command('sweep')
    .description('delete expired tokens')
    .action(() => run(sweepCommand(env, io)));

  cli
    .command('tenant')
    .description('tenant maintenance')
    .command('destroy')
    .description('crypto-shred a tenant: destroy its keys and delete its tokens')
    .argument('<tenant>', 'the tenant')
    .option('--yes', 'really: nothing can bring them back', false)
    .action((tenant: string, options: { yes: boolean }) => run(destroyTenantCommand(tenant, options, env, io)));

  apiKeyCommands(cli, env, io, run);

  const audit = cli.command('audit').description('the audit trail');
  audit
    .command('verify')
    .description("check every tenant's keyed audit chain, and that it reaches the signed checkpoints in FILE")
    .option('--tenant <tenant>', 'only this tenant')
    .option('--checkpoints <file>', "the vault's log, or any file with its checkpoint lines (- for standard input)")
    .action((options: { tenant?: string; checkpoints?: string }) => run(auditVerifyCommand(options, env, io)));
  audit
    .command('seal')
    .description('sign the start of chains written before the keyed chain, once checked (after an upgrade)')
    .option('--tenant <tenant>', 'only this tenant')
    .action((options: { tenant?: string }) => run(auditSealCommand(options, env, io)));
  audit
    .command('prune')
    .description('drop audit events from before a month (as the database owner)')
    .addOption(new Option('--before <YYYY-MM>', 'the first month kept').argParser(month).makeOptionMandatory())
    .action((options: { before: Date }) => run(auditPruneCommand(options, env, io)));

  return cli;
}

export async function main(argv: string[], env: Env, out: (text: string) => void = (t) => console.log(t), err: (text: string) => void = (t) => console.error(t)): Promise<number> {
  let code: Promise<number> | number = 0;
  const io = { out, err };
  const cli = program(env, io, (answer) => (code = answer));
  if (argv.length === 0) {
    err(cli.helpInformation().trimEnd());
    return USAGE_ERROR;
  }
  try {
    await cli.parseAsync(argv, { from: 'user' });
    return await code;
  } catch (error) {
    if (error instanceof CommanderError) return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : USAGE_ERROR;
    if (error instanceof ConfigError || error instanceof MasterKeyMismatch || error instanceof KekSetupError) {
      err(`phonevault: configuration refused: ${error.message}`);
      return CONFIG_ERROR;
    }
    if (isVaultError(error)) {
      err(`phonevault: ${error.detail}`);
      return 1;
    }
    // Only the class and code: a driver message can quote a connection string or a value.
    const { name, code: errno } = error as { name?: string; code?: string };
    const hint =
      errno === 'EADDRINUSE'
        ? ': the port is taken; set PORT or --port'
        : errno && /^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|28P01|3D000)$/.test(errno)
          ? ': cannot reach the database named by DATABASE_URL'
          : '';
    err(`phonevault: ${argv[0]} failed (${name ?? 'Error'}${errno ? ` ${errno}` : ''})${hint}`);
    return 1;
  }
}
