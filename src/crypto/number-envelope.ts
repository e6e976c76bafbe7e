import { encodeAad, open, seal } from './aead.js';

/**
 * A number at rest: version byte ‖ key version (u32) ‖ IV ‖ ciphertext ‖ tag. The AAD binds tenant, token id
 * and key version, so an envelope copied to another row, tenant or version fails to open. The plaintext is
 * padded to a fixed 16 bytes (the longest E.164 string) so that the row does not reveal the number's length.
 */
const ENVELOPE_VERSION = 1;
const HEADER_BYTES = 5;
const PADDED_BYTES = 16;

export interface NumberContext {
  tenant: string;
  tokenId: Buffer;
}

const AAD_LABEL = 'phonevault:number:v1';

// The AAD's leading fields (label, tenant) are the same for every number of a tenant: encoded once and kept
// (bounded), then the token id and key version are written after them. The bytes are exactly
// encodeAad(AAD_LABEL, [tenant, tokenId, keyVersion]); a test holds the two equal.
const aadPrefixes = new Map<string, Buffer>();
const MAX_AAD_PREFIXES = 1_000;

export function numberAad(context: NumberContext, keyVersion: number): Buffer {
  let prefix = aadPrefixes.get(context.tenant);
  if (!prefix) {
    prefix = encodeAad(AAD_LABEL, [context.tenant]);
    if (aadPrefixes.size >= MAX_AAD_PREFIXES) aadPrefixes.clear();
    aadPrefixes.set(context.tenant, prefix);
  }
  const id = context.tokenId;
  if (id.length > 0xffff) throw new Error('token id too long');
  const aad = Buffer.allocUnsafe(prefix.length + 2 + id.length + 2 + 4);
  let at = prefix.copy(aad, 0);
  at = aad.writeUInt16BE(id.length, at);
  at += id.copy(aad, at);
  at = aad.writeUInt16BE(4, at);
  aad.writeUInt32BE(keyVersion, at);
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
  if (envelope.length < HEADER_BYTES || envelope.readUInt8(0) !== ENVELOPE_VERSION) {
    throw new Error('unknown envelope version');
  }
  return envelope.readUInt32BE(1);
}

export function openNumber(key: Buffer, context: NumberContext, envelope: Buffer): string {
  const keyVersion = envelopeKeyVersion(envelope);
  const plain = open(key, envelope.subarray(HEADER_BYTES), numberAad(context, keyVersion));
  const end = plain.indexOf(0);
  return plain.toString('latin1', 0, end === -1 ? plain.length : end);
}
