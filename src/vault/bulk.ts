import { fingerprintNumber } from '../crypto/fingerprint.js';
import { openNumber, sealNumber } from '../crypto/number-envelope.js';
import { formatOf, newTokenId, type TokenFormat } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import { parsePhone, type LineType, type ParsedPhone } from '../phone/parse.js';
import type { EnvelopeRow } from '../store/tokens/rows.js';

export type { EnvelopeRow } from '../store/tokens/rows.js';

/**
 * The CPU-bound halves of tokenize and detokenize (libphonenumber, AES-GCM, HMAC) as pure functions over plain
 * values: no I/O, no logger, no state. They run inline for small requests and on a worker thread for large
 * ones (src/vault/offload.ts), with the same results either way.
 */

export interface PhoneInput {
  phone: string;
  country?: string | undefined;
}

/** Why one item of a batch was refused, the rest going on: only what is wrong with that item's number. */
export interface ItemError {
  code: 'invalid_phone' | 'invalid_country';
  detail: string;
}

/** What kind of token a request makes: one per number (deterministic) or a new one each time, of either shape. */
export interface Minting {
  deterministic: boolean;
  format: TokenFormat;
}

/** The active data key, its version and the tenant's fingerprint key, for sealing. */
export interface SealingKeys {
  version: number;
  key: Buffer;
  fingerprintKey: Buffer;
}

/** A number sealed under a fresh token id, ready to store. */
export interface SealedRow {
  tokenId: Buffer;
  keyVersion: number;
  envelope: Buffer;
  fingerprint: Buffer;
  e164: string;
  country: string | null;
  lineType: LineType;
}

export interface Parsed {
  /** Per input, in order: the index of its number, or why it was refused. */
  slots: Array<number | ItemError>;
  phones: ParsedPhone[];
}

export interface Prepared {
  /** Per input, in order: the index of its row, or why it was refused. */
  slots: Array<number | ItemError>;
  rows: SealedRow[];
}

/**
 * Parses every input. With `deterministic`, inputs that are the same number (in any format) share one entry,
 * since they must get one token.
 */
export function parseInputs(inputs: PhoneInput[], deterministic: boolean): Parsed {
  const slots: Array<number | ItemError> = new Array(inputs.length);
  const phones: ParsedPhone[] = [];
  const byNumber = deterministic ? new Map<string, number>() : null;
  for (const [index, input] of inputs.entries()) {
    let phone;
    try {
      phone = parsePhone(input.phone, input.country);
    } catch (error) {
      if (!(error instanceof VaultError) || (error.code !== 'invalid_phone' && error.code !== 'invalid_country')) throw error;
      slots[index] = { code: error.code, detail: error.detail };
      continue;
    }
    const seen = byNumber?.get(phone.e164);
    if (seen !== undefined) {
      slots[index] = seen;
      continue;
    }
    phones.push(phone);
    byNumber?.set(phone.e164, phones.length - 1);
    slots[index] = phones.length - 1;
  }
  return { slots, phones };
}

/** Seals a number under a fresh token id of the given shape. */
export function sealRow(tenant: string, keys: SealingKeys, phone: ParsedPhone, format: TokenFormat): SealedRow {
  const tokenId = newTokenId(format);
  const fingerprint = fingerprintNumber(keys.fingerprintKey, phone.e164);
  return {
    tokenId,
    keyVersion: keys.version,
    envelope: sealNumber(keys.key, keys.version, { tenant, tokenId, fingerprint }, phone.e164),
    fingerprint,
    e164: phone.e164,
    country: phone.country,
    lineType: phone.lineType,
  };
}

/** The same number sealed again under a fresh id of its row's shape (a collision's, or a vanished winner's, retry). */
export const resealRow = (tenant: string, keys: SealingKeys, row: SealedRow): SealedRow => sealRow(tenant, keys, row, formatOf(row.tokenId));

/** parseInputs, then each number sealed under a fresh token id. */
export function prepareRows(tenant: string, inputs: PhoneInput[], keys: SealingKeys, minting: Minting): Prepared {
  const { slots, phones } = parseInputs(inputs, minting.deterministic);
  return { slots, rows: phones.map((phone) => sealRow(tenant, keys, phone, minting.format)) };
}


/** Per row: the number; null when the envelope fails authentication; undefined when its key is not at hand. */
export type Opened = string | null | undefined;

export function openRows(tenant: string, keys: ReadonlyMap<number, Buffer>, rows: EnvelopeRow[]): Opened[] {
  return rows.map((row) => {
    const key = keys.get(row.keyVersion);
    if (!key) return undefined;
    try {
      return openNumber(key, { tenant, tokenId: row.tokenId, fingerprint: row.fingerprint }, row.envelope);
    } catch {
      return null;
    }
  });
}
