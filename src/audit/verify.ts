import type { AuditRepository } from '../store/audit-repository.js';
import { verifyChain, type ChainProblem } from './chain.js';

const PAGE = 10_000;

export interface TenantVerification {
  tenant: string;
  events: number;
  problem: ChainProblem | null;
}

/** Verifies one tenant's chain page by page, from its retention anchor to its head. */
export async function verifyTenantAudit(audit: AuditRepository, tenant: string): Promise<TenantVerification> {
  const head = await audit.head(tenant);
  if (!head) return { tenant, events: 0, problem: null };
  let anchor = { seq: head.anchorSeq, hash: head.anchorHash };
  let events = 0;
  for (;;) {
    const page = await audit.chainPage(tenant, anchor.seq, PAGE);
    const problem = verifyChain(page, anchor, page.length < PAGE ? head : undefined);
    events += page.length;
    if (problem) return { tenant, events, problem };
    if (page.length < PAGE) return { tenant, events, problem: null };
    anchor = { seq: page.at(-1)!.seq, hash: page.at(-1)!.hash };
  }
}

export function describeProblem(tenant: string, problem: ChainProblem): string {
  switch (problem.kind) {
    case 'edited':
      return `tenant ${tenant}: event ${problem.seq} was edited (its hash no longer matches its fields)`;
    case 'reordered':
      return `tenant ${tenant}: event ${problem.seq} is out of place (intact, but chained to another position)`;
    case 'removed':
      return `tenant ${tenant}: ${problem.missing} event(s) removed after event ${problem.afterSeq}`;
    case 'truncated':
      return `tenant ${tenant}: events after ${problem.lastSeq} removed (the chain head is at ${problem.headSeq})`;
  }
}
