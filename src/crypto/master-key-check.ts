import { encodeAad } from './aead.js';
import { unwraps, type Kek } from './kek.js';

/** A value only the right KEK opens: a seal of one zero byte, bound to the KEK's id, whatever its provider. */
const aadOf = (id: string) => encodeAad('phonevault:master-key-check:v1', [id]);

// Not nothing: KMS refuses to encrypt an empty plaintext. Only whether it opens is checked, so the seals of
// nothing that earlier versions stored still check.
const SEALED = Buffer.from([0]);

export function masterKeyCheckValue(kek: Kek): Promise<Buffer> {
  return kek.wrap(SEALED, aadOf(kek.id));
}

/** Whether the KEK opens the check value; a provider that cannot be reached throws (KekUnavailableError). */
export function masterKeyMatches(kek: Kek, checkValue: Buffer): Promise<boolean> {
  return unwraps(() => kek.unwrap(checkValue, aadOf(kek.id)));
}
