import { createCipheriv, createDecipheriv } from 'node:crypto';
import { randomBytesBuffered } from './random.js';

/** AES-256-GCM with a random 96-bit IV and a 128-bit tag; output is IV ‖ ciphertext ‖ tag. */
export const KEY_BYTES = 32;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;

export function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  const iv = randomBytesBuffered(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

/** Throws on any tampering, a wrong key or a wrong AAD; never returns unauthenticated bytes. */
export function open(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new Error('sealed value too short');
  const iv = sealed.subarray(0, IV_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const body = decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES));
  decipher.final();
  return body;
}

/** Length-prefixed fields, so that no two different contexts serialise to the same AAD. */
export function encodeAad(label: string, fields: Array<string | Buffer | number>): Buffer {
  const parts: Buffer[] = [];
  for (const field of [label, ...fields]) {
    let bytes: Buffer;
    if (typeof field === 'number') {
      bytes = Buffer.alloc(4);
      bytes.writeUInt32BE(field);
    } else {
      bytes = typeof field === 'string' ? Buffer.from(field, 'utf8') : field;
    }
    const length = Buffer.alloc(2);
    length.writeUInt16BE(bytes.length);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}
