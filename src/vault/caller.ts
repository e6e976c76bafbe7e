import type { AuditEvent } from '../audit/chain.js';

/** Who is calling and why, as plain values: tenant and client come only from a verified credential. */
export interface Caller {
  tenant: string;
  client: string;
  /** The request this call serves, for the audit trail (null from the command line). */
  requestId: string | null;
  /** The caller's stated reason, already checked against the allow-list (src/audit/purpose.ts). */
  purpose: string | null;
}

/** The event that records a caller's successful call: what it did, to how many items. */
export function eventOf(caller: Caller, action: string, items: number): AuditEvent {
  return {
    tenant: caller.tenant,
    client: caller.client,
    action,
    items,
    outcome: 'ok',
    requestId: caller.requestId,
    purpose: caller.purpose,
    occurredAt: new Date(),
  };
}

/** The command line's maintenance runs, audited like API calls under the client name `cli`. */
export const cliCaller = (tenant: string): Caller => ({ tenant, client: 'cli', requestId: null, purpose: null });
