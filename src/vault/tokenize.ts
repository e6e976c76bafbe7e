import { fingerprintNumber } from '../crypto/fingerprint.js';
import { sealNumber } from '../crypto/number-envelope.js';
import { formatToken, newTokenId } from '../crypto/tokens.js';
import { VaultError, type ErrorCode } from '../errors.js';
import { parsePhone, type LineType, type ParsedPhone } from '../phone/parse.js';
import type { NewTokenRow } from '../store/tokens-repository.js';
import type { Caller, VaultDeps } from './vault.js';

export interface PhoneInput {
  phone: string;
  country?: string | undefined;
}

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

export interface ItemError {
  code: ErrorCode;
  detail: string;
}

export type BatchOutcome = { index: number; tokenized: Tokenized } | { index: number; error: ItemError };

const MAX_DETERMINISTIC_ATTEMPTS = 3;

export async function tokenize(deps: VaultDeps, caller: Caller, input: PhoneInput, options: TokenizeOptions): Promise<Tokenized> {
  const [outcome] = await tokenizeBatch(deps, caller, [input], options);
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
): Promise<BatchOutcome[]> {
  if (options.deterministic && options.ttlSeconds !== undefined) {
    // One number has one deterministic token; an expiry would make it vanish for every holder at once.
    throw new VaultError('invalid_request', 'ttlSeconds cannot be combined with deterministic tokens');
  }
  const outcomes: BatchOutcome[] = new Array(inputs.length);
  const parsed: Array<{ index: number; phone: ParsedPhone }> = [];
  for (const [index, input] of inputs.entries()) {
    try {
      parsed.push({ index, phone: parsePhone(input.phone, input.country) });
    } catch (error) {
      if (!(error instanceof VaultError)) throw error;
      outcomes[index] = { index, error: { code: error.code, detail: error.detail } };
    }
  }
  if (parsed.length === 0) return outcomes;

  const expiresAt = options.ttlSeconds === undefined ? null : new Date(Date.now() + options.ttlSeconds * 1000);
  const tokens = options.deterministic
    ? await storeDeterministic(deps, caller, parsed.map((p) => p.phone))
    : await storeRandom(deps, caller, parsed.map((p) => p.phone), expiresAt);
  for (const [position, { index, phone }] of parsed.entries()) {
    outcomes[index] = {
      index,
      tokenized: { token: tokens[position]!, country: phone.country, lineType: phone.lineType, deterministic: options.deterministic, expiresAt },
    };
  }
  return outcomes;
}

function sealRow(keys: { version: number; key: Buffer; fingerprintKey: Buffer }, tenant: string, phone: ParsedPhone, deterministic: boolean, expiresAt: Date | null): NewTokenRow {
  const tokenId = newTokenId();
  return {
    tokenId,
    keyVersion: keys.version,
    envelope: sealNumber(keys.key, keys.version, { tenant, tokenId }, phone.e164),
    fingerprint: fingerprintNumber(keys.fingerprintKey, phone.e164),
    deterministic,
    country: phone.country,
    lineType: phone.lineType,
    expiresAt,
  };
}

async function storeRandom(deps: VaultDeps, caller: Caller, phones: ParsedPhone[], expiresAt: Date | null): Promise<string[]> {
  const keys = await deps.keyring.forWriting(caller.tenant, phones.length);
  const rows = phones.map((phone) => sealRow(keys, caller.tenant, phone, false, expiresAt));
  await deps.tokens.insert(caller.tenant, rows);
  return rows.map((row) => formatToken(row.tokenId));
}

/**
 * The same number gets the same token, however it was formatted and however many writers race for it: the
 * unique index arbitrates, and a writer that lost reads the winner's token in a fresh statement.
 */
async function storeDeterministic(deps: VaultDeps, caller: Caller, phones: ParsedPhone[]): Promise<string[]> {
  const unique = [...new Map(phones.map((phone) => [phone.e164, phone])).values()];
  const holders = new Map<string, Buffer>();
  let pending = unique;
  for (let attempt = 0; attempt < MAX_DETERMINISTIC_ATTEMPTS && pending.length > 0; attempt++) {
    const keys = await deps.keyring.forWriting(caller.tenant, pending.length);
    const rows = pending.map((phone) => sealRow(keys, caller.tenant, phone, true, null));
    const inserted = await deps.tokens.insert(caller.tenant, rows);
    const lost = rows.filter((row) => !inserted.has(row.fingerprint.toString('hex')));
    const existing = lost.length > 0 ? await deps.tokens.findDeterministic(caller.tenant, lost.map((row) => row.fingerprint)) : new Map();
    const byFingerprint = new Map<string, ParsedPhone>();
    for (const [position, row] of rows.entries()) {
      const fingerprint = row.fingerprint.toString('hex');
      const holder = inserted.get(fingerprint) ?? existing.get(fingerprint)?.tokenId;
      if (holder) holders.set(pending[position]!.e164, holder);
      else byFingerprint.set(fingerprint, pending[position]!); // erased between our insert and our read
    }
    pending = [...byFingerprint.values()];
  }
  if (pending.length > 0) throw new Error('deterministic tokens kept vanishing while being created');
  return phones.map((phone) => formatToken(holders.get(phone.e164)!));
}
