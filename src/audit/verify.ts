import type { AuditReads } from '../store/audit-reads.js';
import { headSignature, verifyChain, type ChainProblem } from './chain.js';
import type { Checkpoint } from './checkpoint.js';

const PAGE = 10_000;

export type AuditProblem =
  | ChainProblem
  | { kind: 'no_head' }
  | { kind: 'head_forged' }
  | { kind: 'unsigned'; anchorSeq: number; keyedAfter: number }
  | { kind: 'short_of_checkpoint'; lastSeq: number; checkpointSeq: number }
  | { kind: 'checkpoint_mismatch'; seq: number };

export interface TenantVerification {
  tenant: string;
  events: number;
  problem: AuditProblem | null;
}

/**
 * Verifies one tenant's chain page by page: that its head's starting point is signed, that every event from
 * there chains under the audit key up to the head, and that every checkpoint written outside the database (by
 * seq ascending) is in the chain with the hash it had then, the last one included. Checkpoints from before the
 * chain's anchor (pruned events) cannot be checked; two different ones for the same seq can never both hold.
 */
export async function verifyTenantAudit(auditLog: AuditReads, key: Buffer, tenant: string, checkpoints: readonly Checkpoint[] = []): Promise<TenantVerification> {
  const head = await auditLog.head(tenant);
  if (!head) return { tenant, events: 0, problem: { kind: 'no_head' } };
  const start = { seq: head.anchorSeq, hash: head.anchorHash };
  if (head.headMac) {
    if (!headSignature(key, tenant, start, head.keyedAfter).equals(head.headMac)) return { tenant, events: 0, problem: { kind: 'head_forged' } };
  } else if (head.anchorSeq > 0 || head.keyedAfter > 0) {
    return { tenant, events: 0, problem: { kind: 'unsigned', anchorSeq: head.anchorSeq, keyedAfter: head.keyedAfter } };
  }
  const chainKey = { key, keyedAfter: head.keyedAfter };
  let next = checkpoints.findIndex((checkpoint) => checkpoint.seq >= start.seq);
  if (next === -1) next = checkpoints.length;
  let anchor = start;
  let events = 0;
  for (;;) {
    const page = await auditLog.chainPage(tenant, anchor.seq, PAGE);
    const last = page.length < PAGE;
    const problem = verifyChain(chainKey, page, anchor, last ? head : undefined);
    events += page.length;
    if (problem) return { tenant, events, problem };
    const lastSeq = page.at(-1)?.seq ?? anchor.seq;
    // The chain is verified up to lastSeq, so each checkpoint up there must name one of its links exactly.
    for (; next < checkpoints.length && checkpoints[next]!.seq <= lastSeq; next++) {
      const checkpoint = checkpoints[next]!;
      const link = checkpoint.seq === anchor.seq ? anchor : page[checkpoint.seq - anchor.seq - 1];
      if (!link || link.seq !== checkpoint.seq || !link.hash.equals(checkpoint.hash)) return { tenant, events, problem: { kind: 'checkpoint_mismatch', seq: checkpoint.seq } };
    }
    if (last) {
      const latest = checkpoints.at(-1);
      if (latest && lastSeq < latest.seq) return { tenant, events, problem: { kind: 'short_of_checkpoint', lastSeq, checkpointSeq: latest.seq } };
      return { tenant, events, problem: null };
    }
    anchor = { seq: page.at(-1)!.seq, hash: page.at(-1)!.hash };
  }
}

export function describeProblem(tenant: string, problem: AuditProblem): string {
  switch (problem.kind) {
    case 'edited':
      return `tenant ${tenant}: event ${problem.seq} was edited (its hash no longer matches its fields under the audit key)`;
    case 'reordered':
      return `tenant ${tenant}: event ${problem.seq} is out of place (intact, but chained to another position)`;
    case 'removed':
      return `tenant ${tenant}: ${problem.missing} event(s) removed after event ${problem.afterSeq}`;
    case 'truncated':
      return `tenant ${tenant}: events after ${problem.lastSeq} removed (the chain head is at ${problem.headSeq})`;
    case 'no_head':
      return `tenant ${tenant}: has no audit head row, though it has events, keys or logged checkpoints (deleted?)`;
    case 'head_forged':
      return `tenant ${tenant}: the audit head's anchor or legacy boundary was changed (its signature does not match)`;
    case 'unsigned':
      return `tenant ${tenant}: the chain starts at event ${problem.anchorSeq} with ${problem.keyedAfter} unkeyed event(s), and nothing signs that start (a database upgraded from a release before the keyed chain, or a moved anchor)`;
    case 'short_of_checkpoint':
      return `tenant ${tenant}: the chain ends at event ${problem.lastSeq}, short of the checkpoint at ${problem.checkpointSeq} (events removed from the end)`;
    case 'checkpoint_mismatch':
      return `tenant ${tenant}: event ${problem.seq} is not the event the checkpoint recorded (the chain was rewritten)`;
  }
}
