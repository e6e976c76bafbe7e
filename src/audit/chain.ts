import { createHash } from 'node:crypto';
import { encodeFields } from '../crypto/aead.js';

/** One audit event: who did what to how many items, with what outcome. Never a number, never a token. */
export interface AuditEvent {
  tenant: string;
  client: string;
  action: string;
  items: number;
  outcome: string;
  requestId: string | null;
  purpose: string | null;
  occurredAt: Date;
}

export interface ChainedEvent extends AuditEvent {
  seq: number;
  hash: Buffer;
}

/** A chain hash is a SHA-256 digest. */
const CHAIN_HASH_BYTES = 32;

export const GENESIS_HASH = Buffer.alloc(CHAIN_HASH_BYTES);

export const CHAIN_LABEL = 'phonevault:audit:v1';

// An event's hashed fields, in order, either side of its seq.
// Before the seq there are only the label and the tenant, the same for every event of a tenant.
const fieldsBeforeSeq = (tenant: string) => [CHAIN_LABEL, tenant];
const fieldsAfterSeq = (event: AuditEvent) => [
  String(event.occurredAt.getTime()),
  event.client,
  event.action,
  String(event.items),
  event.outcome,
  event.requestId ?? '',
  event.purpose ?? '',
];

/**
 * SHA-256 over the previous hash and every field, length-prefixed so that no two events encode alike (the
 * label, tenant, seq, time in epoch ms, client, action, items, outcome, request id, purpose). The vault computes
 * it when it verifies; the database when it appends, from `chainEncodingBeforeSeq` and `chainEncodingAfterSeq`.
 */
export function chainHash(previous: Buffer, seq: number, event: AuditEvent): Buffer {
  const fields = encodeFields([...fieldsBeforeSeq(event.tenant), String(seq), ...fieldsAfterSeq(event)]);
  return createHash('sha256').update(previous).update(fields).digest();
}

/**
 * An event's encoding in chainHash, cut where its seq goes: an append sends the part before it once per tenant
 * and the part after it per event, and the database, which alone knows the seq under the head's lock, hashes
 * previous ‖ before ‖ seq field ‖ after.
 */
export function chainEncodingBeforeSeq(tenant: string): Buffer {
  return encodeFields(fieldsBeforeSeq(tenant));
}

export function chainEncodingAfterSeq(event: AuditEvent): Buffer {
  return encodeFields(fieldsAfterSeq(event));
}

export type ChainProblem =
  | { kind: 'edited'; seq: number }
  | { kind: 'removed'; afterSeq: number; missing: number }
  | { kind: 'reordered'; seq: number }
  | { kind: 'truncated'; lastSeq: number; headSeq: number };

const MOVE_SEARCH_WINDOW = 32;

/**
 * An event is intact but misplaced when its hash chains from another stored hash under some nearby seq: its
 * fields still match its hash, so it was moved rather than edited. Searched only once a break is found.
 */
function wasMoved(event: ChainedEvent, index: number, events: ChainedEvent[], anchor: { seq: number; hash: Buffer }): boolean {
  const from = Math.max(0, index - MOVE_SEARCH_WINDOW);
  const to = Math.min(events.length, index + MOVE_SEARCH_WINDOW);
  const predecessors = [...(from === 0 ? [anchor.hash] : []), ...events.slice(from, to).map((e) => e.hash)].filter((hash) => hash !== event.hash);
  for (let seq = Math.max(1, event.seq - MOVE_SEARCH_WINDOW); seq <= event.seq + MOVE_SEARCH_WINDOW; seq++) {
    if (predecessors.some((hash) => chainHash(hash, seq, event).equals(event.hash))) return true;
  }
  return false;
}

/**
 * Walks a tenant's events in seq order from the anchor (the point a retention cut left) and names the first
 * place the chain breaks: an event whose fields changed, events missing in the middle or at the end, or an
 * event that sits where another belongs.
 */
export function verifyChain(events: ChainedEvent[], anchor: { seq: number; hash: Buffer }, head?: { seq: number; hash: Buffer }): ChainProblem | null {
  let previous = anchor.hash;
  let expectedSeq = anchor.seq + 1;
  for (const [index, event] of events.entries()) {
    if (event.seq !== expectedSeq) return { kind: 'removed', afterSeq: expectedSeq - 1, missing: event.seq - expectedSeq };
    if (!chainHash(previous, event.seq, event).equals(event.hash)) {
      return wasMoved(event, index, events, anchor) ? { kind: 'reordered', seq: event.seq } : { kind: 'edited', seq: event.seq };
    }
    previous = event.hash;
    expectedSeq++;
  }
  const lastSeq = expectedSeq - 1;
  if (head && (lastSeq !== head.seq || !previous.equals(head.hash))) return { kind: 'truncated', lastSeq, headSeq: head.seq };
  return null;
}
