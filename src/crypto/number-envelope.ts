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

function numberAad(context: NumberContext, keyVersion: number): Buffer {
  return encodeAad('phonevault:number:v1', [context.tenant, context.tokenId, keyVersion]);
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
