import { encodeAad } from './aead.js';
import { unwraps, type Kek } from './kek.js';

/** A value only the right KEK opens: a GCM seal of nothing, bound to the KEK's id, whatever its provider. */
const aadOf = (id: string) => encodeAad('phonevault:master-key-check:v1', [id]);

export function masterKeyCheckValue(kek: Kek): Promise<Buffer> {
  return kek.wrap(Buffer.alloc(0), aadOf(kek.id));
}

/** Whether the KEK opens the check value; a provider that cannot be reached throws (KekUnavailableError). */
export function masterKeyMatches(kek: Kek, checkValue: Buffer): Promise<boolean> {
  return unwraps(() => kek.unwrap(checkValue, aadOf(kek.id)));
}
