import { randomBytesBuffered } from './random.js';

/**
 * A token is `tok_` and the unpadded base64url of 128 random bits (22 characters). It is never derived from
 * the number. Only the canonical spelling parses, so one id has exactly one token string.
 */
export const TOKEN_ID_BYTES = 16;
const TOKEN_PREFIX = 'tok_';
export const TOKEN_PATTERN = /^tok_[A-Za-z0-9_-]{21}[AQgw]$/;

export function newTokenId(): Buffer {
  return randomBytesBuffered(TOKEN_ID_BYTES);
}

export function formatToken(id: Buffer): string {
  return TOKEN_PREFIX + id.toString('base64url');
}

export function parseToken(token: string): Buffer | null {
  if (!TOKEN_PATTERN.test(token)) return null;
  const id = Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url');
  return id.length === TOKEN_ID_BYTES ? id : null;
}
