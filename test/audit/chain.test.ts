import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readCheckpoints, checkpointFields, CHECKPOINT_MESSAGE } from '../../src/audit/checkpoint.js';
import { chainEvents, chainHash, GENESIS_HASH, legacyChainHash, verifyChain, type AuditEvent, type ChainedEvent } from '../../src/audit/chain.js';

const key = Buffer.alloc(32, 9);
const keyed = { key, keyedAfter: 0 };

const eventOf = (seq: number): AuditEvent => ({ tenant: 'acme', client: `c${seq % 3}`, action: 'detokenize', items: seq, outcome: 'ok', requestId: `r${seq}`, purpose: null, occurredAt: new Date(1_700_000_000_000 + seq) });

function chain(n: number, keyedAfter = 0): ChainedEvent[] {
  const events: ChainedEvent[] = [];
  let previous: Buffer = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const event = eventOf(seq);
    const hash = seq > keyedAfter ? chainHash(key, previous, seq, event) : legacyChainHash(previous, seq, event);
    events.push({ ...event, seq, hash });
    previous = hash;
  }
  return events;
}
const genesis = { seq: 0, hash: GENESIS_HASH };
const headOf = (events: ChainedEvent[]) => ({ seq: events.at(-1)!.seq, hash: events.at(-1)!.hash });

describe('audit hash chain', () => {
  it('hashes legacy events exactly as earlier releases stored them (pinned vectors)', () => {
    const event: AuditEvent = { tenant: 'acme', client: 'svc-ü', action: 'detokenize', items: 3, outcome: 'ok', requestId: 'r-1', purpose: null, occurredAt: new Date(1_700_000_000_123) };
    expect(legacyChainHash(GENESIS_HASH, 1, event).toString('hex')).toBe('c53bba2ad3eda3b1c6384a4107990ba988d162add49411e3539c3a4e5ef31fe4');
    expect(legacyChainHash(Buffer.alloc(32, 7), 12345, { ...event, purpose: 'ticket 9', requestId: null }).toString('hex')).toBe(
      '954d8b5041eacaa76c15735d8e3f3ed827f825a0023366a8b17afcf7dea6f753',
    );
  });

  it('keys every new hash: another key, or none, gives another chain (pinned vector)', () => {
    const event = eventOf(1);
    expect(chainHash(key, GENESIS_HASH, 1, event).toString('hex')).toBe('831fef697159461a9b17174a5ec53aefd2f7cb508dcab4aa0dc2b2ea4cd921ad');
    expect(chainHash(Buffer.alloc(32, 8), GENESIS_HASH, 1, event)).not.toEqual(chainHash(key, GENESIS_HASH, 1, event));
    expect(legacyChainHash(GENESIS_HASH, 1, event)).not.toEqual(chainHash(key, GENESIS_HASH, 1, event));
    // Every field is covered.
    for (const change of [{ tenant: 'acmf' }, { client: 'c9' }, { action: 'lookup' }, { items: 2 }, { outcome: 'denied' }, { requestId: null }, { purpose: 'support' }, { occurredAt: new Date(0) }]) {
      expect(chainHash(key, GENESIS_HASH, 1, { ...event, ...change })).not.toEqual(chainHash(key, GENESIS_HASH, 1, event));
    }
    expect(chainHash(key, GENESIS_HASH, 2, event)).not.toEqual(chainHash(key, GENESIS_HASH, 1, event));
  });

  it('chains a run of events from a head as verifyChain expects', () => {
    const events = [eventOf(1), eventOf(2), eventOf(3)];
    const { links, head } = chainEvents(key, genesis, events);
    expect(links.map((l) => l.seq)).toEqual([1, 2, 3]);
    expect(head).toEqual(links[2]);
    expect(verifyChain(keyed, events.map((e, i) => ({ ...e, ...links[i]! })), genesis, head)).toBeNull();
  });

  it('verifies an intact chain, and one that turned keyed part way', () => {
    const events = chain(20);
    expect(verifyChain(keyed, events, genesis, headOf(events))).toBeNull();
    const upgraded = chain(20, 8);
    expect(verifyChain({ key, keyedAfter: 8 }, upgraded, genesis, headOf(upgraded))).toBeNull();
    // Claiming the keyed part started later does not make re-chained legacy hashes pass.
    expect(verifyChain({ key, keyedAfter: 20 }, upgraded, genesis, headOf(upgraded))).toEqual({ kind: 'edited', seq: 9 });
  });

  it('names an edited event, and an event re-chained without the key', () => {
    const events = chain(20);
    const tampered = events.map((e) => (e.seq === 7 ? { ...e, items: 1000 } : e));
    expect(verifyChain(keyed, tampered, genesis, headOf(events))).toEqual({ kind: 'edited', seq: 7 });
    // Whoever has the database but not the key recomputes the hashes the only way open to them.
    const rechained = events.map((e) => (e.seq === 3 ? { ...e, purpose: 'support', hash: legacyChainHash(events[1]!.hash, 3, { ...e, purpose: 'support' }) } : e));
    expect(verifyChain(keyed, rechained, genesis, headOf(events))).toEqual({ kind: 'edited', seq: 3 });
    const wrongKey = events.map((e) => (e.seq === 3 ? { ...e, hash: chainHash(randomBytes(32), events[1]!.hash, 3, e) } : e));
    expect(verifyChain(keyed, wrongKey, genesis, headOf(events))).toEqual({ kind: 'edited', seq: 3 });
  });

  it('names events removed from the middle and from the end', () => {
    const events = chain(20);
    expect(verifyChain(keyed, events.filter((e) => e.seq !== 9 && e.seq !== 10), genesis, headOf(events))).toEqual({ kind: 'removed', afterSeq: 8, missing: 2 });
    expect(verifyChain(keyed, events.slice(0, 15), genesis, headOf(events))).toEqual({ kind: 'truncated', lastSeq: 15, headSeq: 20 });
  });

  it('names a reordered event: intact, but chained to another predecessor', () => {
    const events = chain(20);
    const swapped = events.map((e) => (e.seq === 5 ? { ...events[5]!, seq: 5 } : e.seq === 6 ? { ...events[4]!, seq: 6 } : e));
    expect(verifyChain(keyed, swapped, genesis, headOf(events))).toEqual({ kind: 'reordered', seq: 5 });
  });

  it('verifies from a retention anchor', () => {
    const events = chain(20);
    const kept = events.slice(10);
    expect(verifyChain(keyed, kept, { seq: 10, hash: events[9]!.hash }, headOf(events))).toBeNull();
    expect(verifyChain(keyed, kept, genesis, headOf(events))).toEqual({ kind: 'removed', afterSeq: 0, missing: 10 });
  });
});

describe('audit checkpoints', () => {
  const line = (fields: object) => JSON.stringify({ level: 30, msg: CHECKPOINT_MESSAGE, ...fields });

  it('reads every authentic checkpoint of each tenant from log lines, and counts forged ones', () => {
    const events = chain(5);
    const text = [
      'not json',
      JSON.stringify({ msg: 'request', status: 200 }),
      line(checkpointFields(key, { tenant: 'acme', seq: 3, hash: events[2]!.hash })),
      line(checkpointFields(key, { tenant: 'acme', seq: 5, hash: events[4]!.hash })),
      line(checkpointFields(key, { tenant: 'acme', seq: 4, hash: events[3]!.hash })),
      line(checkpointFields(key, { tenant: 'acme', seq: 4, hash: events[3]!.hash })),
      line(checkpointFields(key, { tenant: 'globex', seq: 1, hash: GENESIS_HASH })),
      // Forged: signed under another key, a field changed after signing, a malformed line.
      line(checkpointFields(randomBytes(32), { tenant: 'acme', seq: 9, hash: events[4]!.hash })),
      line({ ...checkpointFields(key, { tenant: 'acme', seq: 5, hash: events[4]!.hash }), seq: 6 }),
      line({ tenant: 'acme', seq: 'x', hash: 'zz', mac: 'zz' }),
    ].join('\n');
    const read = readCheckpoints(key, text);
    expect(read.forged).toBe(3);
    // Every authentic checkpoint, by seq, each once however often the log repeats it.
    expect(read.byTenant.get('acme')).toEqual([3, 4, 5].map((seq) => ({ tenant: 'acme', seq, hash: events[seq - 1]!.hash })));
    expect(read.byTenant.get('globex')?.map((c) => c.seq)).toEqual([1]);
  });
});
