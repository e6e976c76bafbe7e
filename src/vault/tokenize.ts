import type { AuditEvent } from '../audit/chain.js';
import { openNumber } from '../crypto/number-envelope.js';
import { formatToken, type TokenFormat } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import type { LineType } from '../phone/parse.js';
import type { Transaction } from '../store/db.js';
import type { Holder } from '../store/tokens/hot.js';
import type { NewToken } from '../store/tokens/rows.js';
import { resealRow, type ItemError, type PhoneInput, type Prepared, type SealedRow } from './bulk.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';
import { runOnce, type Answer, type Once } from './idempotency.js';

export type { ItemError, PhoneInput } from './bulk.js';

export interface TokenizeOptions {
  deterministic: boolean;
  /** `opaque` (`tok_…`) unless asked otherwise. */
  format?: TokenFormat | undefined;
  ttlSeconds?: number | undefined;
}

export interface Tokenized {
  token: string;
  country: string | null;
  lineType: LineType;
  deterministic: boolean;
  expiresAt: Date | null;
}

export type BatchOutcome = { index: number; tokenized: Tokenized } | { index: number; error: ItemError };

const MAX_DETERMINISTIC_ATTEMPTS = 3;
// A phone-shaped id collides with one of a tenant's 10^9 tokens once in 10^4 draws: five in a row, never.
const MAX_RANDOM_ATTEMPTS = 5;

/** One number: an invalid one is refused (400) before anything is stored or recorded. */
export async function tokenize(deps: VaultDeps, caller: Caller, input: PhoneInput, options: TokenizeOptions): Promise<Tokenized> {
  const prepared = await prepare(deps, caller, [input], options);
  const [slot] = prepared.slots;
  if (typeof slot !== 'number') throw new VaultError(slot!.code, slot!.detail);
  const [outcome] = await store(deps, caller, prepared, options);
  return (outcome as { tokenized: Tokenized }).tokenized;
}

/** Every valid item is stored with the request's audit event, in one transaction, or none is; invalid items are answered one by one. */
export async function tokenizeBatch(deps: VaultDeps, caller: Caller, inputs: PhoneInput[], options: TokenizeOptions): Promise<BatchOutcome[]> {
  return store(deps, caller, await prepare(deps, caller, inputs, options), options);
}

const storedTokenized = (t: Tokenized) => ({ ...t, expiresAt: t.expiresAt?.toISOString() ?? null });
const revivedTokenized = (t: ReturnType<typeof storedTokenized>): Tokenized => ({ ...t, expiresAt: t.expiresAt === null ? null : new Date(t.expiresAt) });

const ONE: Answer<Tokenized> = { status: 201, toStored: storedTokenized, fromStored: (s) => revivedTokenized(s as ReturnType<typeof storedTokenized>), items: () => 1 };
const BATCH: Answer<BatchOutcome[]> = {
  status: 200,
  toStored: (outcomes) => outcomes.map((o) => ('error' in o ? o : { index: o.index, tokenized: storedTokenized(o.tokenized) })),
  fromStored: (stored) =>
    (stored as Array<{ index: number; error: ItemError } | { index: number; tokenized: ReturnType<typeof storedTokenized> }>).map((o) =>
      'error' in o ? o : { index: o.index, tokenized: revivedTokenized(o.tokenized) },
    ),
  items: (outcomes) => outcomes.length,
};

/** tokenize, once per Idempotency-Key (src/vault/idempotency.ts): a retry gets the first answer, nothing more is stored. */
export async function tokenizeOnce(deps: VaultDeps, caller: Caller, input: PhoneInput, options: TokenizeOptions, key: string): Promise<{ value: Tokenized; replayed: boolean }> {
  const once = { key, operation: 'tokenize', action: 'tokenize', request: { ...input, ...options } };
  return tokenizeInTransaction(deps, caller, once, ONE, async (sink) => {
    const prepared = await prepare(deps, caller, [input], options);
    const [slot] = prepared.slots;
    if (typeof slot !== 'number') throw new VaultError(slot!.code, slot!.detail);
    return ((await store(deps, caller, prepared, options, sink))[0] as { tokenized: Tokenized }).tokenized;
  });
}

/** tokenizeBatch, once per Idempotency-Key. */
export async function tokenizeBatchOnce(deps: VaultDeps, caller: Caller, inputs: PhoneInput[], options: TokenizeOptions, key: string): Promise<{ value: BatchOutcome[]; replayed: boolean }> {
  const once = { key, operation: 'tokenizeBatch', action: 'tokenize', request: { items: inputs, ...options } };
  return tokenizeInTransaction(deps, caller, once, BATCH, async (sink) => store(deps, caller, await prepare(deps, caller, inputs, options), options, sink));
}

/**
 * For `phonevault import`: a batch parsed and sealed ahead (prepareBatch), so that the next batch's CPU work
 * overlaps this one's commit, then stored with its one event and whatever `alongside` writes (the run's
 * checkpoint) in one transaction: all of it, or none.
 */
export const prepareBatch = (deps: VaultDeps, caller: Caller, inputs: PhoneInput[], options: TokenizeOptions): Promise<Prepared> => prepare(deps, caller, inputs, options);

export async function storeBatchWith(
  deps: VaultDeps,
  caller: Caller,
  prepared: Prepared,
  options: TokenizeOptions,
  alongside: (tx: Transaction, outcomes: BatchOutcome[]) => Promise<void>,
): Promise<BatchOutcome[]> {
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    const events: AuditEvent[] = [];
    const value = await store(deps, caller, prepared, options, transactionSink(deps, caller.tenant, tx, events));
    await alongside(tx, value);
    return { value, events };
  });
}

async function tokenizeInTransaction<T>(deps: VaultDeps, caller: Caller, once: Once, answer: Answer<T>, run: (sink: Sink) => Promise<T>) {
  // The tenant's fingerprint key keys the hashes; a tenant's first request makes its keys, as any tokenize would.
  const { fingerprintKey } = await deps.keyring.forWriting(caller.tenant, 0);
  return runOnce(deps, caller, once, answer, fingerprintKey, async (tx) => {
    const events: AuditEvent[] = [];
    const value = await run(transactionSink(deps, caller.tenant, tx, events));
    return { value, events };
  });
}

/**
 * Parses and seals, inline or on a worker thread, under keys reserved for every input: the GCM budget may count
 * an invalid input's encryption that never happened, never the other way round.
 */
async function prepare(deps: VaultDeps, caller: Caller, inputs: PhoneInput[], options: TokenizeOptions): Promise<Prepared> {
  if (options.deterministic && options.ttlSeconds !== undefined) {
    // One number has one deterministic token; an expiry would make it vanish for every holder at once.
    throw new VaultError('invalid_request', 'ttlSeconds cannot be combined with deterministic tokens');
  }
  const keys = await deps.keyring.forWriting(caller.tenant, inputs.length);
  return deps.offload.prepareRows(caller.tenant, inputs, keys, { deterministic: options.deterministic, format: options.format ?? 'opaque' });
}

/** Where a tokenize's rows and events go: the hot path's shared statements, or an idempotent request's transaction. */
interface Sink {
  insert(rows: NewToken[], events: AuditEvent[]): Promise<Holder[]>;
  /** The events of a request that stores no row (every item invalid). */
  record(events: AuditEvent[]): Promise<void>;
}

const hotSink = (deps: VaultDeps, tenant: string): Sink => ({
  insert: (rows, events) => deps.tokens.insert(tenant, rows, events),
  record: async (events) => {
    await deps.auditLog.commit(tenant, async () => ({ value: null, events }));
  },
});

/** Rows inserted in `tx`, events collected for the transaction's own commit. */
const transactionSink = (deps: VaultDeps, tenant: string, tx: Transaction, events: AuditEvent[]): Sink => ({
  insert: async (rows, own) => {
    events.push(...own);
    return deps.tokens.insertWithin(tx, tenant, rows);
  },
  record: async (own) => {
    events.push(...own);
  },
});

async function store(deps: VaultDeps, caller: Caller, { slots, rows }: Prepared, options: TokenizeOptions, sink = hotSink(deps, caller.tenant)): Promise<BatchOutcome[]> {
  const expiresAt = options.ttlSeconds === undefined ? null : new Date(Date.now() + options.ttlSeconds * 1000);
  const events = [eventOf(caller, 'tokenize', slots.length)];
  let tokens: string[] = [];
  if (rows.length === 0) await sink.record(events);
  else if (options.deterministic) tokens = await storeDeterministic(deps, sink, caller.tenant, rows, events);
  else tokens = await storeRandom(deps, sink, caller.tenant, rows, expiresAt, events);
  return slots.map((slot, index) => {
    if (typeof slot !== 'number') return { index, error: slot };
    const row = rows[slot]!;
    return { index, tokenized: { token: tokens[slot]!, country: row.country, lineType: row.lineType, deterministic: options.deterministic, expiresAt } };
  });
}

const toNewToken = (row: SealedRow, deterministic: boolean, expiresAt: Date | null): NewToken => ({
  tokenId: row.tokenId,
  keyVersion: row.keyVersion,
  envelope: row.envelope,
  fingerprint: row.fingerprint,
  deterministic,
  country: row.country,
  lineType: row.lineType,
  expiresAt,
});

/**
 * Inserts the rows with the request's events and answers each row's holder, in order. A row that got none (its id
 * already taken in the tenant, or a deterministic winner erased before it was read) is sealed again under a fresh
 * id and inserted again, as the same request (its events went with the first insert), at most `attempts` times.
 */
async function insertHeld(
  deps: VaultDeps,
  sink: Sink,
  tenant: string,
  sealed: SealedRow[],
  insert: { toRow: (row: SealedRow) => NewToken; attempts: number; failure: string; check?: (row: SealedRow, holder: NonNullable<Holder>) => Promise<void> },
  events: AuditEvent[],
): Promise<Array<NonNullable<Holder>>> {
  const rows = [...sealed];
  const holders: Holder[] = sealed.map(() => null);
  let pending = sealed.map((_, i) => i);
  for (let attempt = 0; attempt < insert.attempts && pending.length > 0; attempt++) {
    if (attempt > 0) {
      const keys = await deps.keyring.forWriting(tenant, pending.length);
      for (const i of pending) rows[i] = resealRow(tenant, keys, rows[i]!);
    }
    const answered = await sink.insert(
      pending.map((i) => insert.toRow(rows[i]!)),
      attempt === 0 ? events : [],
    );
    for (const [at, i] of pending.entries()) {
      const holder = answered[at] ?? null;
      if (holder) await insert.check?.(rows[i]!, holder);
      holders[i] = holder;
    }
    pending = pending.filter((i) => !holders[i]);
  }
  if (pending.length > 0) throw new Error(insert.failure);
  return holders.map((holder) => holder!);
}

/** New tokens, each under a fresh random id (an id already taken: a phone-shaped one now and then, an opaque one never in practice). */
async function storeRandom(deps: VaultDeps, sink: Sink, tenant: string, sealed: SealedRow[], expiresAt: Date | null, events: AuditEvent[]): Promise<string[]> {
  const held = await insertHeld(deps, sink, tenant, sealed, { toRow: (row) => toNewToken(row, false, expiresAt), attempts: MAX_RANDOM_ATTEMPTS, failure: 'random token ids kept colliding' }, events);
  return held.map((holder) => formatToken(holder.tokenId));
}

/**
 * The same number gets the same token, however it was formatted and however many writers race for it: the
 * unique index arbitrates, and the insert's transaction reads the winners. A winner's envelope is opened to be
 * sure it holds this number (a fingerprint is only a column); a winner erased between the insert and its read is
 * sealed again under a new id. The rows come one per number (src/vault/bulk.ts).
 */
async function storeDeterministic(deps: VaultDeps, sink: Sink, tenant: string, sealed: SealedRow[], events: AuditEvent[]): Promise<string[]> {
  const held = await insertHeld(
    deps,
    sink,
    tenant,
    sealed,
    {
      toRow: (row) => toNewToken(row, true, null),
      attempts: MAX_DETERMINISTIC_ATTEMPTS,
      failure: 'deterministic tokens kept vanishing while being created',
      // A winner other than the row itself must hold this number.
      check: async (row, holder) => {
        if (holder.tokenId !== row.tokenId) await assertHolds(deps, tenant, holder, row.e164);
      },
    },
    events,
  );
  return held.map((holder) => formatToken(holder.tokenId));
}

async function assertHolds(deps: VaultDeps, tenant: string, holder: NonNullable<Holder>, e164: string): Promise<void> {
  const key = await (await deps.keyring.forReading(tenant))?.dataKey(holder.keyVersion);
  let held: string | null = null;
  try {
    if (key) held = openNumber(key, { tenant, tokenId: holder.tokenId, fingerprint: holder.fingerprint }, holder.envelope);
  } catch {
    held = null;
  }
  if (held !== e164) {
    // The number's deterministic slot holds another number, or an envelope that does not open: tampering.
    deps.logger.error({ tenant, keyVersion: holder.keyVersion }, 'a deterministic token does not hold the number its fingerprint says');
    throw new Error('deterministic token does not hold its number');
  }
}
