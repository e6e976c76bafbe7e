import { encodeAad, open, seal } from './aead.js';

/**
 * A number at rest: version byte ‖ key version (u32) ‖ IV ‖ ciphertext ‖ tag. The AAD binds tenant, token id,
 * key version and the row's fingerprint, so an envelope copied to another row, tenant or version fails to open,
 * and so does a row whose fingerprint was changed: the column that says which rows hold a number cannot be
 * moved without the row becoming unreadable, so erasure, which finds a number's rows by it, misses none that
 * could still be read. The plaintext is padded to a fixed 16 bytes (the longest E.164 string) so that the row
 * does not reveal the number's length.
 *
 * Version 1 envelopes (before the fingerprint was bound) still open; `phonevault rewrap` reseals them as version 2.
 */
const ENVELOPE_VERSION = 2;
const LEGACY_VERSION = 1;
const HEADER_BYTES = 5;
const PADDED_BYTES = 16;

export interface NumberContext {
  tenant: string;
  tokenId: Buffer;
  /** The row's fingerprint column (src/crypto/fingerprint.ts). */
  fingerprint: Buffer;
}

const AAD_LABELS = { [LEGACY_VERSION]: 'phonevault:number:v1', [ENVELOPE_VERSION]: 'phonevault:number:v2' } as const;

// The AAD's leading fields (label, tenant) are the same for every number of a tenant: encoded once and kept
// (bounded), then the token id, key version and (version 2) fingerprint are written after them. The bytes are
// exactly encodeAad(label, [tenant, tokenId, keyVersion, fingerprint]); a test holds the two equal.
const aadPrefixes = new Map<string, Buffer>();
const MAX_AAD_PREFIXES = 1_000;

export function numberAad(context: NumberContext, keyVersion: number, envelopeVersion: 1 | 2 = ENVELOPE_VERSION): Buffer {
  const cacheKey = `${envelopeVersion}${context.tenant}`;
  let prefix = aadPrefixes.get(cacheKey);
  if (!prefix) {
    prefix = encodeAad(AAD_LABELS[envelopeVersion], [context.tenant]);
    if (aadPrefixes.size >= MAX_AAD_PREFIXES) aadPrefixes.clear();
    aadPrefixes.set(cacheKey, prefix);
  }
  const { tokenId: id, fingerprint } = context;
  if (id.length > 0xffff || fingerprint.length > 0xffff) throw new Error('token id or fingerprint too long');
  const bound = envelopeVersion === ENVELOPE_VERSION ? 2 + fingerprint.length : 0;
  const aad = Buffer.allocUnsafe(prefix.length + 2 + id.length + 2 + 4 + bound);
  let at = prefix.copy(aad, 0);
  at = aad.writeUInt16BE(id.length, at);
  at += id.copy(aad, at);
  at = aad.writeUInt16BE(4, at);
  at = aad.writeUInt32BE(keyVersion, at);
  if (bound > 0) {
    at = aad.writeUInt16BE(fingerprint.length, at);
    fingerprint.copy(aad, at);
  }
  return aad;
}

export function sealNumber(key: Buffer, keyVersion: number, context: NumberContext, e164: string): Buffer {
  const plain = Buffer.alloc(PADDED_BYTES);
  if (Buffer.byteLength(e164) > PADDED_BYTES) throw new Error('number too long to seal');
  plain.write(e164, 'latin1');
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt8(ENVELOPE_VERSION, 0);
  header.writeUInt32BE(keyVersion, 1);
  return Buffer.concat([header, seal(key, plain, numberAad(context, keyVersion))]);
}

/** The key version an envelope was sealed under, read before the key is fetched. */
export function envelopeKeyVersion(envelope: Buffer): number {
  const version = envelope.length < HEADER_BYTES ? -1 : envelope.readUInt8(0);
  if (version !== ENVELOPE_VERSION && version !== LEGACY_VERSION) throw new Error('unknown envelope version');
  return envelope.readUInt32BE(1);
}

/** Whether an envelope predates the current format (rewrap reseals it). */
export const isLegacyEnvelope = (envelope: Buffer): boolean => envelope.length > 0 && envelope.readUInt8(0) === LEGACY_VERSION;

export function openNumber(key: Buffer, context: NumberContext, envelope: Buffer): string {
  const keyVersion = envelopeKeyVersion(envelope);
  const aad = numberAad(context, keyVersion, envelope.readUInt8(0) === LEGACY_VERSION ? LEGACY_VERSION : ENVELOPE_VERSION);
  const plain = open(key, envelope.subarray(HEADER_BYTES), aad);
  const end = plain.indexOf(0);
  return plain.toString('latin1', 0, end === -1 ? plain.length : end);
}
