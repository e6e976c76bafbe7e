import { readFileSync } from 'node:fs';
import pino from 'pino';
import { readCheckpoints } from './audit/checkpoint.js';
import { describeProblem } from './audit/verify.js';
import { ConfigError, loadMaintenanceConfig, type Env } from './config/index.js';
import type { KekSet } from './crypto/kek.js';
import { openKeks } from './crypto/open-keks.js';
import { isVaultError, VaultError } from './errors.js';
import { createPgDb, type Db } from './store/db.js';
import { tenantExists } from './store/keys-repository.js';
import { guardMasterKeys } from './store/master-key-guard.js';
import { pruneAudit, sealAudit, verifyAudit } from './vault/audit.js';
import { cliCaller } from './vault/caller.js';
import { openVault, type VaultDeps } from './vault/deps.js';
import type { Offload } from './vault/offload.js';
import { destroyKeyVersion } from './vault/keys.js';
import { destroyTenant, rewrap, rewrapMasterKeys, sweep, type RewrapProgress } from './vault/maintenance.js';

// The maintenance commands, each given its parsed options (src/cli.ts parses them); each answers an exit code.

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Connects with the maintenance configuration, refuses a wrong master key, runs fn, always closes. */
/**
 * The vault's dependencies for one command. `first` runs before the vault is opened (which records the master
 * key's check value and the audit key on a fresh database), so that a command refused there writes nothing.
 */
export async function withVault<T>(env: Env, fn: (deps: VaultDeps) => Promise<T>, first?: (db: Db) => Promise<void>, offload?: Offload): Promise<T> {
  const config = loadMaintenanceConfig(env);
  // Maintenance pages take longer than a request: their statements get more time.
  const db = createPgDb({ connectionString: config.databaseUrl, max: 4, queryTimeoutMs: 60_000 });
  let keks: KekSet | undefined;
  try {
    await first?.(db);
    keks = await openKeks(config.kek);
    await guardMasterKeys(db, keks);
    return await fn(await openVault({ db, keks, keyMaxEncryptions: config.keyMaxEncryptions, logger: pino({ level: 'silent' }), ...(offload ? { offload } : {}) }));
  } finally {
    await keks?.close();
    await db.close();
  }
}

/** A 30-character bar and percentage for a share from 0 to 1, as the commands draw their progress on a terminal. */
export const progressBar = (share: number) => {
  const filled = Math.round(Math.min(1, share) * 30);
  return `[${'#'.repeat(filled)}${' '.repeat(30 - filled)}] ${(Math.min(1, share) * 100).toFixed(0).padStart(3)}%`;
};

/** A bar that redraws in place on a terminal, and a plain line at most once a second otherwise. */
function progressPrinter(out: Io['out'], tty: boolean, write: (text: string) => void) {
  let lastLine = 0;
  return (progress: RewrapProgress) => {
    const share = progress.total === 0 ? 1 : Math.min(1, progress.moved / progress.total);
    if (tty) {
      write(`\r${progressBar(share)}  ${progress.tenant}  ${progress.moved}/${progress.total}`);
    } else if (Date.now() - lastLine >= 1000) {
      lastLine = Date.now();
      out(`rewrap ${progress.tenant}: ${progress.moved}/${progress.total} tokens moved`);
    }
  };
}

export async function rewrapCommand(options: { tenant?: string; batchSize: number }, env: Env, { out }: Io): Promise<number> {
  const tty = Boolean(process.stderr.isTTY);
  const report = await withVault(env, (deps) =>
    rewrap(deps, { tenant: options.tenant, batchSize: options.batchSize, onProgress: progressPrinter(out, tty, (text) => process.stderr.write(text)) }),
  );
  if (tty) process.stderr.write('\n');
  out(
    `rewrap done: ${report.moved} tokens moved to the active key in ${report.tenants} tenant(s); ${report.remaining} remain on older versions or formats; ${report.unreadable} unreadable; ${report.misplaced} misplaced (their fingerprint was moved)`,
  );
  return report.unreadable > 0 || report.misplaced > 0 || report.remaining > 0 ? 1 : 0;
}

export async function rewrapMasterCommand(env: Env, { out }: Io): Promise<number> {
  const { rewrapped, retired } = await withVault(env, (deps) => rewrapMasterKeys(deps));
  const retiredText = retired.length > 0 ? `; no key is wrapped by ${retired.map((id) => `"${id}"`).join(', ')} any more (its check value was dropped): remove it from the configuration` : '';
  out(`re-wrapped ${rewrapped} key(s) under the active master key${retiredText}`);
  return 0;
}

export async function destroyKeyCommand(options: { tenant: string; version: number }, env: Env, { out }: Io): Promise<number> {
  await withVault(env, (deps) => destroyKeyVersion(deps, cliCaller(options.tenant), options.version));
  out(`destroyed data key version ${options.version} of tenant ${options.tenant}: it can never encrypt or decrypt again`);
  return 0;
}

export async function sweepCommand(env: Env, { out }: Io): Promise<number> {
  const deleted = await withVault(env, (deps) => sweep(deps));
  out(`sweep: deleted ${deleted.tokens} expired token(s) and ${deleted.idempotencyKeys} expired idempotency key(s)`);
  return 0;
}

export async function destroyTenantCommand(tenant: string, options: { yes: boolean }, env: Env, { out, err }: Io): Promise<number> {
  if (!options.yes) {
    out(`this destroys every key of tenant ${tenant} and deletes its tokens; nothing can bring them back. Run again with --yes`);
    return 2;
  }
  let result;
  try {
    result = await withVault(
      env,
      (deps) => destroyTenant(deps, tenant),
      async (db) => {
        if (!(await tenantExists(db, tenant))) throw new VaultError('not_found', `no tenant ${tenant} in this vault`);
      },
    );
  } catch (error) {
    if (!isVaultError(error) || error.code !== 'not_found') throw error;
    err(`phonevault: no tenant ${tenant} in this vault; nothing was destroyed`);
    return 1;
  }
  out(`tenant ${tenant} destroyed: ${result.keyVersions} data key version(s) and its fingerprint key shredded, ${result.tokens} token(s) deleted`);
  return 0;
}

export async function auditVerifyCommand(options: { tenant?: string; checkpoints?: string }, env: Env, { out }: Io): Promise<number> {
  let text: string | null = null;
  if (options.checkpoints !== undefined) {
    try {
      text = readFileSync(options.checkpoints === '-' ? 0 : options.checkpoints, 'utf8');
    } catch {
      throw new ConfigError(['--checkpoints: cannot read the file it names']);
    }
  }
  return withVault(env, async (deps) => {
    const checkpoints = text === null ? null : readCheckpoints(deps.auditKey, text);
    if (checkpoints && checkpoints.forged > 0) out(`WARNING ${checkpoints.forged} checkpoint line(s) carry no valid signature and were ignored`);
    const results = await verifyAudit(deps, { tenant: options.tenant, ...(checkpoints ? { checkpoints: checkpoints.byTenant } : {}) });
    let broken = 0;
    for (const result of results) {
      if (result.problem) {
        broken++;
        out(`BROKEN ${describeProblem(result.tenant, result.problem)}`);
      } else {
        const checked = checkpoints?.byTenant.get(result.tenant)?.at(-1);
        out(`ok     tenant ${result.tenant}: ${result.events} event(s), chain intact${checked ? `, reaches checkpoint ${checked.seq}` : ''}`);
      }
    }
    out(broken === 0 ? `audit verify: ${results.length} tenant chain(s) intact` : `audit verify: ${broken} of ${results.length} tenant chain(s) broken`);
    return broken === 0 && (checkpoints?.forged ?? 0) === 0 ? 0 : 1;
  });
}

export async function auditSealCommand(options: { tenant?: string }, env: Env, { out }: Io): Promise<number> {
  const results = await withVault(env, (deps) => sealAudit(deps, { tenant: options.tenant }));
  for (const { tenant, sealed } of results) out(sealed ? `sealed tenant ${tenant}: its unkeyed start is signed` : `NOT SEALED tenant ${tenant}: its chain does not verify; run audit verify`);
  out(`audit seal: ${results.filter((r) => r.sealed).length} chain(s) sealed`);
  return results.every((r) => r.sealed) ? 0 : 1;
}

export async function auditPruneCommand(options: { before: Date }, env: Env, { out }: Io): Promise<number> {
  const dropped = await withVault(env, (deps) => pruneAudit(deps, options.before));
  out(`audit prune: dropped ${dropped} event(s) from before ${options.before.toISOString()}; chains now verify from their new, signed anchors`);
  return 0;
}
