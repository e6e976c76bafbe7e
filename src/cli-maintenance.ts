import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { readCheckpoints } from './audit/checkpoint.js';
import { describeProblem } from './audit/verify.js';
import { ConfigError, loadMaintenanceConfig, type Env } from './config/index.js';
import { isVaultError } from './errors.js';
import { createPgDb } from './store/db.js';
import { guardMasterKeys } from './store/master-key-guard.js';
import { pruneAudit, sealAudit, verifyAudit } from './vault/audit.js';
import { cliCaller } from './vault/caller.js';
import { openVault, type VaultDeps } from './vault/deps.js';
import { destroyKeyVersion } from './vault/keys.js';
import { destroyTenant, rewrap, rewrapMasterKeys, sweep, type RewrapProgress } from './vault/maintenance.js';

type Out = (text: string) => void;

/** Connects with the maintenance configuration, refuses a wrong master key, runs fn, always closes. */
async function withVault<T>(env: Env, fn: (deps: VaultDeps) => Promise<T>): Promise<T> {
  const config = loadMaintenanceConfig(env);
  // Maintenance pages take longer than a request: their statements get more time.
  const db = createPgDb({ connectionString: config.databaseUrl, max: 4, queryTimeoutMs: 60_000 });
  try {
    await guardMasterKeys(db, config.masterKeys);
    return await fn(await openVault({ db, masterKeys: config.masterKeys, keyMaxEncryptions: config.keyMaxEncryptions, logger: pino({ level: 'silent' }) }));
  } finally {
    await db.close();
  }
}

/** A bar that redraws in place on a terminal, and a plain line at most once a second otherwise. */
function progressPrinter(out: Out, tty: boolean, write: (text: string) => void) {
  let lastLine = 0;
  return (progress: RewrapProgress) => {
    const share = progress.total === 0 ? 1 : Math.min(1, progress.moved / progress.total);
    if (tty) {
      const filled = Math.round(share * 30);
      write(`\r[${'#'.repeat(filled)}${' '.repeat(30 - filled)}] ${(share * 100).toFixed(0).padStart(3)}%  ${progress.tenant}  ${progress.moved}/${progress.total}`);
    } else if (Date.now() - lastLine >= 1000) {
      lastLine = Date.now();
      out(`rewrap ${progress.tenant}: ${progress.moved}/${progress.total} tokens moved`);
    }
  };
}

export async function rewrapCommand(args: string[], env: Env, out: Out): Promise<number> {
  const { values } = parseArgs({ args, options: { tenant: { type: 'string' }, 'batch-size': { type: 'string', default: '500' } } });
  const batchSize = Number(values['batch-size']);
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new ConfigError(['--batch-size must be a whole number from 1 to 10000']);
  const tty = Boolean(process.stderr.isTTY);
  const report = await withVault(env, (deps) => rewrap(deps, { tenant: values.tenant, batchSize, onProgress: progressPrinter(out, tty, (text) => process.stderr.write(text)) }));
  if (tty) process.stderr.write('\n');
  out(`rewrap done: ${report.moved} tokens moved to the active key in ${report.tenants} tenant(s); ${report.remaining} remain on older versions; ${report.unreadable} unreadable`);
  return report.unreadable > 0 || report.remaining > 0 ? 1 : 0;
}

export async function keysCommand(args: string[], env: Env, out: Out): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'rewrap-master') {
    const { rewrapped } = await withVault(env, (deps) => rewrapMasterKeys(deps));
    out(`re-wrapped ${rewrapped} key(s) under the active master key; master keys no longer listed can now be removed`);
    return 0;
  }
  if (action === 'destroy') {
    const { values } = parseArgs({ args: rest, options: { tenant: { type: 'string' }, version: { type: 'string' } } });
    const version = Number(values.version);
    if (!values.tenant || !Number.isInteger(version) || version < 1) throw new ConfigError(['keys destroy needs --tenant T --version N']);
    await withVault(env, (deps) => destroyKeyVersion(deps, cliCaller(values.tenant!), version));
    out(`destroyed data key version ${version} of tenant ${values.tenant}: it can never encrypt or decrypt again`);
    return 0;
  }
  throw new ConfigError(['usage: phonevault keys destroy --tenant T --version N | phonevault keys rewrap-master']);
}

export async function sweepCommand(env: Env, out: Out): Promise<number> {
  const deleted = await withVault(env, (deps) => sweep(deps.maintenance));
  out(`sweep: deleted ${deleted} expired token(s)`);
  return 0;
}

export async function tenantCommand(args: string[], env: Env, out: Out, err: Out): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { yes: { type: 'boolean', default: false } } });
  const [action, tenant] = positionals;
  if (action !== 'destroy' || !tenant) throw new ConfigError(['usage: phonevault tenant destroy TENANT --yes']);
  if (!values.yes) {
    out(`this destroys every key of tenant ${tenant} and deletes its tokens; nothing can bring them back. Run again with --yes`);
    return 2;
  }
  let result;
  try {
    result = await withVault(env, (deps) => destroyTenant(deps, tenant));
  } catch (error) {
    if (!isVaultError(error) || error.code !== 'not_found') throw error;
    err(`phonevault: no tenant ${tenant} in this vault; nothing was destroyed`);
    return 1;
  }
  out(`tenant ${tenant} destroyed: ${result.keyVersions} data key version(s) and its fingerprint key shredded, ${result.tokens} token(s) deleted`);
  return 0;
}

export async function auditCommand(args: string[], env: Env, out: Out): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { tenant: { type: 'string' }, before: { type: 'string' }, checkpoints: { type: 'string' } } });
  const [action] = positionals;
  if (action === 'verify') {
    let text: string | null = null;
    if (values.checkpoints !== undefined) {
      try {
        text = readFileSync(values.checkpoints === '-' ? 0 : values.checkpoints, 'utf8');
      } catch {
        throw new ConfigError(['--checkpoints: cannot read the file it names']);
      }
    }
    return withVault(env, async (deps) => {
      const checkpoints = text === null ? null : readCheckpoints(deps.auditKey, text);
      if (checkpoints && checkpoints.forged > 0) out(`WARNING ${checkpoints.forged} checkpoint line(s) carry no valid signature and were ignored`);
      const results = await verifyAudit(deps, { tenant: values.tenant, ...(checkpoints ? { checkpoints: checkpoints.latest } : {}) });
      let broken = 0;
      for (const result of results) {
        if (result.problem) {
          broken++;
          out(`BROKEN ${describeProblem(result.tenant, result.problem)}`);
        } else {
          const checked = checkpoints?.latest.get(result.tenant);
          out(`ok     tenant ${result.tenant}: ${result.events} event(s), chain intact${checked ? `, reaches checkpoint ${checked.seq}` : ''}`);
        }
      }
      out(broken === 0 ? `audit verify: ${results.length} tenant chain(s) intact` : `audit verify: ${broken} of ${results.length} tenant chain(s) broken`);
      return broken === 0 && (checkpoints?.forged ?? 0) === 0 ? 0 : 1;
    });
  }
  if (action === 'seal') {
    const results = await withVault(env, (deps) => sealAudit(deps, { tenant: values.tenant }));
    for (const { tenant, sealed } of results) out(sealed ? `sealed tenant ${tenant}: its unkeyed start is signed` : `NOT SEALED tenant ${tenant}: its chain does not verify; run audit verify`);
    out(`audit seal: ${results.filter((r) => r.sealed).length} chain(s) sealed`);
    return results.every((r) => r.sealed) ? 0 : 1;
  }
  if (action === 'prune') {
    const month = /^(\d{4})-(\d{2})$/.exec(values.before ?? '');
    if (!month || Number(month[2]) < 1 || Number(month[2]) > 12) throw new ConfigError(['audit prune needs --before YYYY-MM: events before the first of that month (UTC) are dropped']);
    const cutoff = new Date(Date.UTC(Number(month[1]), Number(month[2]) - 1, 1));
    const dropped = await withVault(env, (deps) => pruneAudit(deps, cutoff));
    out(`audit prune: dropped ${dropped} event(s) from before ${cutoff.toISOString()}; chains now verify from their new, signed anchors`);
    return 0;
  }
  throw new ConfigError(['usage: phonevault audit verify [--tenant T] [--checkpoints FILE] | phonevault audit seal [--tenant T] | phonevault audit prune --before YYYY-MM']);
}
