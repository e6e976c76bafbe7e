import { encodeAad } from './aead.js';
import type { Kek } from './kek.js';

/** A value only the right KEK opens: a GCM seal of nothing, bound to the KEK's id, whatever its provider. */
const aadOf = (id: string) => encodeAad('phonevault:master-key-check:v1', [id]);

export function masterKeyCheckValue(kek: Kek): Promise<Buffer> {
  return kek.wrap(Buffer.alloc(0), aadOf(kek.id));
}

/** Whether the KEK opens the check value; a provider that cannot be reached throws (KekUnavailableError). */
export async function masterKeyMatches(kek: Kek, checkValue: Buffer): Promise<boolean> {
  try {
    await kek.unwrap(checkValue, aadOf(kek.id));
    return true;
  } catch (error) {
    if ((error as Error).name === 'KekUnavailableError') throw error;
    return false;
  }
}
