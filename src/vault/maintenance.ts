import { fingerprintNumber } from '../crypto/fingerprint.js';
import { openNumber, sealNumber } from '../crypto/number-envelope.js';
import { VaultError } from '../errors.js';
import { destroyTenantKeys } from '../store/keys-repository.js';
import { importCheckpoints } from '../store/import-checkpoints.js';
import type { IdempotencyStore } from '../store/idempotency.js';
import type { TokenMaintenance } from '../store/tokens/maintenance.js';
import { cliCaller, eventOf } from './caller.js';
import type { VaultDeps } from './deps.js';

export interface RewrapProgress {
  tenant: string;
  moved: number;
  total: number;
}

export interface RewrapReport {
  tenants: number;
  perTenant: Array<{ tenant: string; moved: number }>;
  moved: number;
  unreadable: number;
  /** Rows that open but hold another number than their fingerprint says (moved): left as they are. */
  misplaced: number;
  remaining: number;
}

const MAX_PASSES = 3;

/** The tenant's active version, and how many of its tokens are still under another, or in the older format. */
async function offActive(deps: VaultDeps, tenant: string): Promise<{ active: number | null; total: number }> {
  const active = await deps.keyAdmin.activeVersion(tenant);
  return { active, total: active === null ? 0 : await deps.maintenance.countForRewrap(tenant, active) };
}

/**
 * Moves a tenant's tokens from older data key versions to the active one, one page (one short statement) at a
 * time, while the vault serves traffic. Safe to interrupt and run again: each row is moved only if it is still
 * under the version it was read with. Passes repeat, so rows written under a just-retired version by another
 * instance's lease are moved too.
 */
export async function rewrap(
  deps: VaultDeps,
  options: { tenant?: string | undefined; batchSize: number; onProgress?: (progress: RewrapProgress) => void },
): Promise<RewrapReport> {
  const tenants = options.tenant ? [options.tenant] : await deps.keyAdmin.listTenants();
  const report: RewrapReport = { tenants: tenants.length, perTenant: [], moved: 0, unreadable: 0, misplaced: 0, remaining: 0 };
  for (const tenant of tenants) {
    const reader = await deps.keyring.forReading(tenant);
    if (!reader) continue;
    const movedBefore = report.moved;
    // Rows left as they are, once each however many passes meet them.
    const left = new Map<string, 'unreadable' | 'misplaced'>();
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      const { active, total } = await offActive(deps, tenant);
      if (active === null || total === 0) break;
      let moved = 0;
      let after: Buffer = Buffer.alloc(0);
      for (;;) {
        const page = await deps.maintenance.pageForRewrap(tenant, active, after, options.batchSize);
        if (page.length === 0) break;
        after = page.at(-1)!.tokenId;
        const keys = await deps.keyring.forWriting(tenant, page.length);
        const rows = [];
        for (const row of page) {
          const oldKey = await reader.dataKey(row.keyVersion);
          let e164: string;
          try {
            if (!oldKey) throw new Error('key version gone');
            e164 = openNumber(oldKey, { tenant, tokenId: row.tokenId, fingerprint: row.fingerprint }, row.envelope);
          } catch {
            left.set(row.tokenId.toString('hex'), 'unreadable');
            continue;
          }
          // A format 1 row that opens under a fingerprint not its number's was moved: sealing it would bind the lie.
          if (!fingerprintNumber(reader.fingerprintKey, e164).equals(row.fingerprint)) {
            left.set(row.tokenId.toString('hex'), 'misplaced');
            continue;
          }
          rows.push({ tokenId: row.tokenId, fromVersion: row.keyVersion, toVersion: keys.version, envelope: sealNumber(keys.key, keys.version, { tenant, tokenId: row.tokenId, fingerprint: row.fingerprint }, e164) });
        }
        if (rows.length > 0) moved += await deps.maintenance.replaceEnvelopes(tenant, rows);
        options.onProgress?.({ tenant, moved, total });
      }
      report.moved += moved;
      if (moved === 0) break;
    }
    for (const why of left.values()) report[why]++;
    const moved = report.moved - movedBefore;
    report.perTenant.push({ tenant, moved });
    await deps.auditLog.commit(tenant, async () => ({ value: null, events: [eventOf(cliCaller(tenant), 'rewrap', moved)] }));
    report.remaining += (await offActive(deps, tenant)).total;
  }
  return report;
}

/**
 * Re-wraps every data and fingerprint key under the active KEK; then the check values of KEKs that wrap nothing
 * any more are dropped, and those KEKs can go from the configuration.
 */
export async function rewrapMasterKeys(deps: VaultDeps): Promise<{ rewrapped: number; retired: string[] }> {
  const rows = await deps.keyAdmin.wrappedNotUnder(deps.keks.activeId);
  let rewrapped = 0;
  for (const row of rows) {
    const raw = await deps.keks.unwrap(row.tenant, row.purpose, row.version, row.wrapped);
    if (await deps.keyAdmin.replaceWrapped(row, await deps.keks.wrap(row.tenant, row.purpose, row.version, raw))) rewrapped++;
  }
  return { rewrapped, retired: await deps.keyAdmin.forgetUnusedChecks(deps.keks.activeId) };
}

/** Deletes expired tokens and expired idempotency keys, in short batches until none is left. */
export async function sweep(
  stores: { maintenance: Pick<TokenMaintenance, 'sweepExpired'>; idempotency: Pick<IdempotencyStore, 'sweepExpired'> },
  batchSize = 1_000,
): Promise<{ tokens: number; idempotencyKeys: number }> {
  const drain = async (sweepExpired: (limit: number) => Promise<number>) => {
    let deleted = 0;
    for (;;) {
      const n = await sweepExpired(batchSize);
      deleted += n;
      if (n < batchSize) return deleted;
    }
  };
  return { tokens: await drain((limit) => stores.maintenance.sweepExpired(limit)), idempotencyKeys: await drain((limit) => stores.idempotency.sweepExpired(limit)) };
}

/**
 * Crypto-shreds a tenant: keys first, with the event that records it (everything unreadable at once), then its
 * rows in batches. A tenant the vault has no keys or tokens of is refused, and nothing is written.
 */
export async function destroyTenant(deps: VaultDeps, tenant: string, batchSize = 5_000): Promise<{ keyVersions: number; tokens: number }> {
  if (!(await deps.keyAdmin.hasKeys(tenant)) && !(await deps.maintenance.hasTokens(tenant))) throw new VaultError('not_found', `no tenant ${tenant} in this vault`);
  const keyVersions = await deps.auditLog.commit(tenant, async (tx) => {
    const destroyed = await destroyTenantKeys(tx, tenant);
    return { value: destroyed, events: [eventOf(cliCaller(tenant), 'tenant_destroy', destroyed)] };
  });
  deps.keyring.forget(tenant);
  let tokens = 0;
  for (;;) {
    const n = await deps.maintenance.deleteTenantPage(tenant, batchSize);
    tokens += n;
    if (n < batchSize) {
      // Its imports' checkpoints too: they hold source keys and tokens of a tenant that is gone.
      await importCheckpoints.removeTenant(deps.db, tenant);
      return { keyVersions, tokens };
    }
  }
}
