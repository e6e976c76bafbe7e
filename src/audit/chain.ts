import { createHash, createHmac } from 'node:crypto';
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

/** Where a tenant's chain stands: the seq and hash of its last event (0 and the genesis hash before any). */
export interface ChainLink {
  seq: number;
  hash: Buffer;
}

export const GENESIS_HASH = Buffer.alloc(32);

const KEYED_LABEL = 'phonevault:audit:v2';
const LEGACY_LABEL = 'phonevault:audit:v1';

const encode = (label: string, seq: number, event: AuditEvent) =>
  encodeFields([
    label,
    event.tenant,
    String(seq),
    String(event.occurredAt.getTime()),
    event.client,
    event.action,
    String(event.items),
    event.outcome,
    event.requestId ?? '',
    event.purpose ?? '',
  ]);

/**
 * HMAC-SHA256, under the vault's audit key, of the previous hash and every field of the event, length-prefixed
 * so that no two events encode alike. Without the key, nobody with access to the database alone can compute a
 * hash, so an edited, inserted, removed or reordered event cannot be covered up by re-chaining.
 */
export function chainHash(key: Buffer, previous: Buffer, seq: number, event: AuditEvent): Buffer {
  return createHmac('sha256', key).update(previous).update(encode(KEYED_LABEL, seq, event)).digest();
}

/** The unkeyed SHA-256 chain of releases before the keyed one, still verified for the events they wrote. */
export function legacyChainHash(previous: Buffer, seq: number, event: AuditEvent): Buffer {
  return createHash('sha256').update(previous).update(encode(LEGACY_LABEL, seq, event)).digest();
}

/** Chains events after `from`, in order, under the key: the seqs and hashes to store, and the new head. */
export function chainEvents(key: Buffer, from: ChainLink, events: AuditEvent[]): { links: ChainLink[]; head: ChainLink } {
  const links: ChainLink[] = [];
  let head = from;
  for (const event of events) {
    head = { seq: head.seq + 1, hash: chainHash(key, head.hash, head.seq + 1, event) };
    links.push(head);
  }
  return { links, head };
}

/**
 * The signature over where a tenant's chain is verified from: the anchor a prune left and the last event of the
 * unkeyed chain of earlier releases. Kept on the head row, so that neither can be moved in the database alone.
 */
export function headSignature(key: Buffer, tenant: string, anchor: ChainLink, keyedAfter: number): Buffer {
  return createHmac('sha256', key)
    .update(encodeFields(['phonevault:audit-head:v1', tenant, String(anchor.seq), anchor.hash, String(keyedAfter)]))
    .digest();
}

export type ChainProblem =
  | { kind: 'edited'; seq: number }
  | { kind: 'removed'; afterSeq: number; missing: number }
  | { kind: 'reordered'; seq: number }
  | { kind: 'truncated'; lastSeq: number; headSeq: number };

/** How a tenant's events are hashed: keyed from `keyedAfter` on (events up to it came from the legacy chain). */
export interface ChainKey {
  key: Buffer;
  keyedAfter: number;
}

const hashOf = (chain: ChainKey, previous: Buffer, seq: number, event: AuditEvent) =>
  seq > chain.keyedAfter ? chainHash(chain.key, previous, seq, event) : legacyChainHash(previous, seq, event);

const MOVE_SEARCH_WINDOW = 32;

/**
 * An event is intact but misplaced when its hash chains from another stored hash under some nearby seq: its
 * fields still match its hash, so it was moved rather than edited. Searched only once a break is found.
 */
function wasMoved(chain: ChainKey, event: ChainedEvent, index: number, events: ChainedEvent[], anchor: ChainLink): boolean {
  const from = Math.max(0, index - MOVE_SEARCH_WINDOW);
  const to = Math.min(events.length, index + MOVE_SEARCH_WINDOW);
  const predecessors = [...(from === 0 ? [anchor.hash] : []), ...events.slice(from, to).map((e) => e.hash)].filter((hash) => hash !== event.hash);
  for (let seq = Math.max(1, event.seq - MOVE_SEARCH_WINDOW); seq <= event.seq + MOVE_SEARCH_WINDOW; seq++) {
    if (predecessors.some((hash) => hashOf(chain, hash, seq, event).equals(event.hash))) return true;
  }
  return false;
}

/**
 * Walks a tenant's events in seq order from the anchor (the point a retention cut left) and names the first
 * place the chain breaks: an event whose fields changed, events missing in the middle or at the end, or an
 * event that sits where another belongs.
 */
export function verifyChain(chain: ChainKey, events: ChainedEvent[], anchor: ChainLink, head?: ChainLink): ChainProblem | null {
  let previous = anchor.hash;
  let expectedSeq = anchor.seq + 1;
  for (const [index, event] of events.entries()) {
    if (event.seq !== expectedSeq) return { kind: 'removed', afterSeq: expectedSeq - 1, missing: event.seq - expectedSeq };
    if (!hashOf(chain, previous, event.seq, event).equals(event.hash)) {
      return wasMoved(chain, event, index, events, anchor) ? { kind: 'reordered', seq: event.seq } : { kind: 'edited', seq: event.seq };
    }
    previous = event.hash;
    expectedSeq++;
  }
  const lastSeq = expectedSeq - 1;
  if (head && (lastSeq !== head.seq || !previous.equals(head.hash))) return { kind: 'truncated', lastSeq, headSeq: head.seq };
  return null;
}
