import { encodeAad, open, seal } from './aead.js';
import type { MasterKey } from './master-keys.js';

/** A value only the right master key opens: a GCM seal of nothing, bound to the key's id. */
const aadOf = (id: string) => encodeAad('phonevault:master-key-check:v1', [id]);

export function masterKeyCheckValue(masterKey: MasterKey): Buffer {
  return seal(masterKey.key, Buffer.alloc(0), aadOf(masterKey.id));
}

export function masterKeyMatches(masterKey: MasterKey, checkValue: Buffer): boolean {
  try {
    open(masterKey.key, checkValue, aadOf(masterKey.id));
    return true;
  } catch {
    return false;
  }
}
