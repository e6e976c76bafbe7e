import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chainEncodingAfterSeq, chainEncodingBeforeSeq, chainHash, GENESIS_HASH, verifyChain, type AuditEvent, type ChainedEvent } from '../../src/audit/chain.js';

function chain(n: number): ChainedEvent[] {
  const events: ChainedEvent[] = [];
  let previous: Buffer = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const event: AuditEvent = { tenant: 'acme', client: `c${seq % 3}`, action: 'detokenize', items: seq, outcome: 'ok', requestId: `r${seq}`, purpose: null, occurredAt: new Date(1_700_000_000_000 + seq) };
    const hash = chainHash(previous, seq, event);
    events.push({ ...event, seq, hash });
    previous = hash;
  }
  return events;
}
const genesis = { seq: 0, hash: GENESIS_HASH };
const headOf = (events: ChainedEvent[]) => ({ seq: events.at(-1)!.seq, hash: events.at(-1)!.hash });

describe('audit hash chain', () => {
  it('hashes exactly as chains already stored were hashed (pinned vectors)', () => {
    const event: AuditEvent = { tenant: 'acme', client: 'svc-ü', action: 'detokenize', items: 3, outcome: 'ok', requestId: 'r-1', purpose: null, occurredAt: new Date(1_700_000_000_123) };
    expect(chainHash(GENESIS_HASH, 1, event).toString('hex')).toBe('c53bba2ad3eda3b1c6384a4107990ba988d162add49411e3539c3a4e5ef31fe4');
    expect(chainHash(Buffer.alloc(32, 7), 12345, { ...event, purpose: 'ticket 9', requestId: null }).toString('hex')).toBe(
      '954d8b5041eacaa76c15735d8e3f3ed827f825a0023366a8b17afcf7dea6f753',
    );
  });

  it('gives the database the encoding either side of the seq, which with the seq field hashes as chainHash', () => {
    const event: AuditEvent = { tenant: 'δ', client: 'c', action: 'lookup', items: 0, outcome: 'not_found', requestId: null, purpose: 'p', occurredAt: new Date(0) };
    for (const seq of [1, 9, 10, 12345, 2 ** 40]) {
      const [before, after] = [chainEncodingBeforeSeq(event.tenant), chainEncodingAfterSeq(event)];
      const seqField = Buffer.concat([Buffer.from([0, String(seq).length]), Buffer.from(String(seq))]);
      const hash = createHash('sha256').update(Buffer.alloc(32, 1)).update(before).update(seqField).update(after).digest();
      expect(hash).toEqual(chainHash(Buffer.alloc(32, 1), seq, event));
    }
  });

  it('verifies an intact chain', () => {
    const events = chain(20);
    expect(verifyChain(events, genesis, headOf(events))).toBeNull();
  });

  it('names an edited event', () => {
    const events = chain(20);
    const tampered = events.map((e) => (e.seq === 7 ? { ...e, items: 1000 } : e));
    expect(verifyChain(tampered, genesis, headOf(events))).toEqual({ kind: 'edited', seq: 7 });
    const purpose = events.map((e) => (e.seq === 3 ? { ...e, purpose: 'nothing to see' } : e));
    expect(verifyChain(purpose, genesis, headOf(events))).toEqual({ kind: 'edited', seq: 3 });
  });

  it('names events removed from the middle and from the end', () => {
    const events = chain(20);
    expect(verifyChain(events.filter((e) => e.seq !== 9 && e.seq !== 10), genesis, headOf(events))).toEqual({ kind: 'removed', afterSeq: 8, missing: 2 });
    expect(verifyChain(events.slice(0, 15), genesis, headOf(events))).toEqual({ kind: 'truncated', lastSeq: 15, headSeq: 20 });
  });

  it('names a reordered event: intact, but chained to another predecessor', () => {
    const events = chain(20);
    // Rows 5 and 6 trade places: each keeps its fields and hash, under the other's seq.
    const swapped = events.map((e) => (e.seq === 5 ? { ...events[5]!, seq: 5 } : e.seq === 6 ? { ...events[4]!, seq: 6 } : e));
    expect(verifyChain(swapped, genesis, headOf(events))).toEqual({ kind: 'reordered', seq: 5 });
  });

  it('verifies from a retention anchor', () => {
    const events = chain(20);
    const kept = events.slice(10);
    expect(verifyChain(kept, { seq: 10, hash: events[9]!.hash }, headOf(events))).toBeNull();
    expect(verifyChain(kept, genesis, headOf(events))).toEqual({ kind: 'removed', afterSeq: 0, missing: 10 });
  });
});
