import type { AuditEvent, ChainedEvent } from '../audit/chain.js';
import { headSignature } from '../audit/chain.js';
import type { Checkpoint } from '../audit/checkpoint.js';
import { StorageUnavailableError } from '../errors.js';
import { verifyTenantAudit, type TenantVerification } from '../audit/verify.js';
import type { AuditQuery } from '../store/audit-reads.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';

/** A page of the caller's tenant's trail, read with the event that records the read. */
export async function readAudit(deps: VaultDeps, caller: Caller, query: AuditQuery): Promise<ChainedEvent[]> {
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    const events = await deps.auditReads.list(caller.tenant, query, tx);
    return { value: events, events: [eventOf(caller, 'audit_read', events.length)] };
  });
}

export interface Unrecorded {
  tenant: string;
  events: number;
  error: unknown;
}

/**
 * Appends events that record no data of their own (counts of refused calls), one tenant at a time, every tenant
 * tried; a tenant's events that cannot go in together are tried one by one, so that one unrecordable event
 * keeps no other out. Answers what could not be recorded.
 */
export async function recordEvents(deps: VaultDeps, events: AuditEvent[]): Promise<Unrecorded[]> {
  const byTenant = new Map<string, AuditEvent[]>();
  for (const event of events) byTenant.set(event.tenant, [...(byTenant.get(event.tenant) ?? []), event]);
  const append = (tenant: string, own: AuditEvent[]) => deps.auditLog.commit(tenant, async () => ({ value: null, events: own }));
  const unrecorded: Unrecorded[] = [];
  for (const [tenant, own] of byTenant) {
    try {
      await append(tenant, own);
    } catch (error) {
      if (own.length === 1 || error instanceof StorageUnavailableError) {
        unrecorded.push({ tenant, events: own.length, error });
        continue;
      }
      for (const event of own) await append(tenant, [event]).catch((alone: unknown) => unrecorded.push({ tenant, events: 1, error: alone }));
    }
  }
  return unrecorded;
}

/** Verifies every tenant's chain (or one), against the latest checkpoint of each when given. */
export async function verifyAudit(deps: VaultDeps, options: { tenant?: string | undefined; checkpoints?: Map<string, Checkpoint[]> }): Promise<TenantVerification[]> {
  // A tenant the log has checkpoints of is verified even when the database no longer knows it at all.
  const tenants = options.tenant ? [options.tenant] : [...new Set([...(await deps.auditReads.tenants()), ...(options.checkpoints?.keys() ?? [])])].sort();
  const results: TenantVerification[] = [];
  for (const tenant of tenants) results.push(await verifyTenantAudit(deps.auditReads, deps.auditKey, tenant, options.checkpoints?.get(tenant)));
  return results;
}

/** Drops every tenant's events from before `cutoff`; each chain then verifies from its new, signed anchor. */
export async function pruneAudit(deps: VaultDeps, cutoff: Date): Promise<number> {
  let dropped = 0;
  for (const tenant of await deps.auditReads.tenants()) {
    dropped += await deps.auditReads.prune(tenant, cutoff, (anchor, keyedAfter) => headSignature(deps.auditKey, tenant, anchor, keyedAfter));
  }
  return dropped;
}

/**
 * Signs the starting point of chains that have none (a database upgraded from a release before the keyed chain):
 * once an operator has checked that the unkeyed part is the trail they trust, that part is accepted from then on.
 * Only an otherwise intact chain is signed.
 */
export async function sealAudit(deps: VaultDeps, options: { tenant?: string | undefined }): Promise<Array<{ tenant: string; sealed: boolean }>> {
  const tenants = options.tenant ? [options.tenant] : await deps.auditReads.tenants();
  const results: Array<{ tenant: string; sealed: boolean }> = [];
  for (const tenant of tenants) {
    const head = await deps.auditReads.head(tenant);
    if (!head || head.headMac || (head.anchorSeq === 0 && head.keyedAfter === 0)) continue;
    const mac = headSignature(deps.auditKey, tenant, { seq: head.anchorSeq, hash: head.anchorHash }, head.keyedAfter);
    await deps.auditReads.signHead(tenant, mac);
    const checked = await verifyTenantAudit(deps.auditReads, deps.auditKey, tenant);
    if (checked.problem) await deps.auditReads.signHead(tenant, null);
    results.push({ tenant, sealed: !checked.problem });
  }
  return results;
}

