import { createHmac } from 'node:crypto';

export const FINGERPRINT_BYTES = 32;

/** HMAC-SHA256 of the E.164 string under the tenant's fingerprint key: equality without the number. */
export function fingerprintNumber(key: Buffer, e164: string): Buffer {
  return createHmac('sha256', key).update(e164, 'latin1').digest();
}
