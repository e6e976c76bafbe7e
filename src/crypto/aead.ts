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

/**
 * Length-prefixed fields, so that no two different contexts serialise to the same AAD: each field is a u16 length
 * and its bytes (strings as UTF-8, numbers as u32). Written into one buffer sized up front: this runs for every
 * number sealed or opened and every audit event chained.
 */
export function encodeAad(label: string, fields: Array<string | Buffer | number>): Buffer {
  return encodeFields([label, ...fields]);
}

/** The fields alone, each as in encodeAad (which is its label, then these). */
export function encodeFields(fields: Array<string | Buffer | number>): Buffer {
  let size = 0;
  for (const field of fields) size += 2 + (typeof field === 'number' ? 4 : typeof field === 'string' ? Buffer.byteLength(field, 'utf8') : field.length);
  const out = Buffer.alloc(size);
  let at = 0;
  for (const field of fields) {
    if (typeof field === 'number') {
      at = out.writeUInt16BE(4, at);
      at = out.writeUInt32BE(field, at);
    } else if (typeof field === 'string') {
      const length = out.write(field, at + 2, 'utf8');
      out.writeUInt16BE(length, at);
      at += 2 + length;
    } else {
      at = out.writeUInt16BE(field.length, at);
      at += field.copy(out, at);
    }
  }
  return out;
}
