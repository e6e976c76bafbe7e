import { randomInt } from 'node:crypto';
import { randomBytesBuffered } from './random.js';

/**
 * A token is one of two shapes, told apart by shape alone:
 * - opaque: `tok_` and the unpadded base64url of 128 random bits (22 characters);
 * - phone-shaped: `+28` and 13 random digits, a 15-digit E.164 string in the country-code block 28x, which the
 *   ITU has never assigned, so it reaches no subscriber and no real number looks like it (docs/design-decisions.md).
 * Neither is ever derived from the number. Both are 16-byte ids: an opaque token's random bytes, a phone-shaped
 * token's own 16 ASCII characters. Only the canonical spelling parses, so one id has exactly one token string.
 */
export const TOKEN_ID_BYTES = 16;
const TOKEN_PREFIX = 'tok_';
const OPAQUE_PATTERN = /^tok_[A-Za-z0-9_-]{21}[AQgw]$/;
export const PHONE_TOKEN_PREFIX = '+28';
const PHONE_TOKEN_DIGITS = 13;
const PHONE_PATTERN = /^\+28[0-9]{13}$/;
/** Either shape; request schemas use it as one pattern. */
export const TOKEN_PATTERN = new RegExp(`${OPAQUE_PATTERN.source}|${PHONE_PATTERN.source}`);

export type TokenFormat = 'opaque' | 'phone';

const PLUS = 0x2b;
const TWO = 0x32;
const EIGHT = 0x38;
const ZERO = 0x30;
const NINE = 0x39;

/** Whether an id is a phone-shaped token's: `+28` and 13 ASCII digits. */
export function isPhoneShapedId(id: Buffer): boolean {
  if (id.length !== TOKEN_ID_BYTES || id[0] !== PLUS || id[1] !== TWO || id[2] !== EIGHT) return false;
  for (let i = 3; i < TOKEN_ID_BYTES; i++) if (id[i]! < ZERO || id[i]! > NINE) return false;
  return true;
}

export function newTokenId(format: TokenFormat = 'opaque'): Buffer {
  if (format === 'phone') {
    // randomInt draws without modulo bias; 10^13 is within its 2^48 range.
    return Buffer.from(PHONE_TOKEN_PREFIX + String(randomInt(0, 10 ** PHONE_TOKEN_DIGITS)).padStart(PHONE_TOKEN_DIGITS, '0'), 'latin1');
  }
  // The two shapes partition the ids: random bytes that spell a phone-shaped token (about 10^-26 of draws) are
  // drawn again, so every id has one shape.
  for (;;) {
    const id = randomBytesBuffered(TOKEN_ID_BYTES);
    if (!isPhoneShapedId(id)) return id;
  }
}

export function formatOf(id: Buffer): TokenFormat {
  return isPhoneShapedId(id) ? 'phone' : 'opaque';
}

export function formatToken(id: Buffer): string {
  return isPhoneShapedId(id) ? id.toString('latin1') : TOKEN_PREFIX + id.toString('base64url');
}

export function parseToken(token: string): Buffer | null {
  if (PHONE_PATTERN.test(token)) return Buffer.from(token, 'latin1');
  if (!OPAQUE_PATTERN.test(token)) return null;
  const id = Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url');
  // An opaque spelling of a phone-shaped id would be a second string for one token.
  return id.length === TOKEN_ID_BYTES && !isPhoneShapedId(id) ? id : null;
}
