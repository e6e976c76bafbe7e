import { formatToken } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import type { LineType } from '../phone/parse.js';
import type { NewTokenRow } from '../store/tokens-repository.js';
import { sealRow, type ItemError, type PhoneInput, type SealedRow } from './bulk.js';
import type { Audited, Caller, VaultDeps } from './vault.js';

export type { ItemError, PhoneInput } from './bulk.js';

export interface TokenizeOptions {
  deterministic: boolean;
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

export async function tokenize(deps: VaultDeps, caller: Caller, input: PhoneInput, options: TokenizeOptions, audit?: Audited): Promise<Tokenized> {
  const [outcome] = await tokenizeBatch(deps, caller, [input], options, audit);
  if (!outcome) throw new Error('tokenizeBatch answered nothing for one item');
  if ('error' in outcome) throw new VaultError(outcome.error.code, outcome.error.detail);
  return outcome.tokenized;
}

/** Every valid item is stored in one statement, or none is; invalid items are answered one by one. */
export async function tokenizeBatch(
  deps: VaultDeps,
  caller: Caller,
  inputs: PhoneInput[],
  options: TokenizeOptions,
  audit?: Audited,
): Promise<BatchOutcome[]> {
  if (options.deterministic && options.ttlSeconds !== undefined) {
    // One number has one deterministic token; an expiry would make it vanish for every holder at once.
    throw new VaultError('invalid_request', 'ttlSeconds cannot be combined with deterministic tokens');
  }
  const { slots, rows } = await deps.offload.prepareRows(caller.tenant, inputs, (count) => deps.keyring.forWriting(caller.tenant, count), options.deterministic);
  const expiresAt = options.ttlSeconds === undefined ? null : new Date(Date.now() + options.ttlSeconds * 1000);
  const tokens =
    rows.length === 0
      ? []
      : options.deterministic
        ? await storeDeterministic(deps, caller, rows, audit)
        : await storeRandom(deps, caller, rows, expiresAt, audit);
  return slots.map((slot, index) => {
    if (typeof slot !== 'number') return { index, error: slot };
    const row = rows[slot]!;
    return { index, tokenized: { token: tokens[slot]!, country: row.country, lineType: row.lineType, deterministic: options.deterministic, expiresAt } };
  });
}

const toNewRow = (row: SealedRow, deterministic: boolean, expiresAt: Date | null): NewTokenRow => ({
  tokenId: row.tokenId,
  keyVersion: row.keyVersion,
  envelope: row.envelope,
  fingerprint: row.fingerprint,
  deterministic,
  country: row.country,
  lineType: row.lineType,
  expiresAt,
});

async function storeRandom(deps: VaultDeps, caller: Caller, rows: SealedRow[], expiresAt: Date | null, audit: Audited | undefined): Promise<string[]> {
  const { recorded } = await deps.tokens.insert(caller.tenant, rows.map((row) => toNewRow(row, false, expiresAt)), audit?.event);
  if (recorded) audit?.recorded();
  return rows.map((row) => formatToken(row.tokenId));
}

/**
 * The same number gets the same token, however it was formatted and however many writers race for it: the
 * unique index arbitrates, and a writer that lost reads the winner's token in a fresh statement. The rows come
 * one per number (src/vault/bulk.ts).
 */
async function storeDeterministic(deps: VaultDeps, caller: Caller, sealed: SealedRow[], audit: Audited | undefined): Promise<string[]> {
  const holders = new Map<string, Buffer>();
  let pending = sealed;
  for (let attempt = 0; attempt < MAX_DETERMINISTIC_ATTEMPTS && pending.length > 0; attempt++) {
    if (attempt > 0) {
      // Numbers whose winning token was erased between our insert and our read: sealed again, under new ids.
      const keys = await deps.keyring.forWriting(caller.tenant, pending.length);
      pending = pending.map((row) => sealRow(caller.tenant, keys, row));
    }
    // The audit event rides with the first insert only.
    const { holders: inserted, recorded } = await deps.tokens.insert(caller.tenant, pending.map((row) => toNewRow(row, true, null)), attempt === 0 ? audit?.event : undefined);
    if (recorded) audit?.recorded();
    const lost = pending.filter((row) => !inserted.has(row.fingerprint.toString('hex')));
    const existing = lost.length > 0 ? await deps.tokens.findDeterministic(caller.tenant, lost.map((row) => row.fingerprint)) : new Map();
    const vanished: SealedRow[] = [];
    for (const row of pending) {
      const fingerprint = row.fingerprint.toString('hex');
      const holder = inserted.get(fingerprint) ?? existing.get(fingerprint)?.tokenId;
      if (holder) holders.set(row.e164, holder);
      else vanished.push(row);
    }
    pending = vanished;
  }
  if (pending.length > 0) throw new Error('deterministic tokens kept vanishing while being created');
  return sealed.map((row) => formatToken(holders.get(row.e164)!));
}
