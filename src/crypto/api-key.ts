import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * API keys: `pvk_`, then base62 of 8 bytes of public id and 32 bytes of secret (54 characters), then base62 of
 * their CRC-32 (6 characters). The fixed prefix and checksum let secret scanners recognise a key and reject
 * look-alikes; the checksum also turns a typo into a 401 without a database read. Only the id and a keyed hash
 * of the secret are stored.
 */
export const API_KEY_PREFIX = 'pvk_';
const ID_BYTES = 8;
const SECRET_BYTES = 32;
const BODY_CHARS = 54; // ceil(320 / log2(62))
const CHECK_CHARS = 6; // 62^6 > 2^32
export const API_KEY_LENGTH = API_KEY_PREFIX.length + BODY_CHARS + CHECK_CHARS;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const SHAPE = new RegExp(`^${API_KEY_PREFIX}[0-9A-Za-z]{${BODY_CHARS + CHECK_CHARS}}$`);
const BODY_MAX = (1n << BigInt(8 * (ID_BYTES + SECRET_BYTES))) - 1n;

function toBase62(value: bigint, width: number): string {
  let text = '';
  for (let i = 0; i < width; i++) {
    text = ALPHABET[Number(value % 62n)]! + text;
    value /= 62n;
  }
  return text;
}

function fromBase62(text: string): bigint {
  let value = 0n;
  for (const char of text) value = value * 62n + BigInt(ALPHABET.indexOf(char));
  return value;
}

const checksum = (body: string) => toBase62(BigInt(crc32(body)), CHECK_CHARS);

export interface ApiKeyParts {
  /** Public: names the key in listings, logs of its use and revocation. 16 hex characters. */
  id: string;
  secret: Buffer;
}

/** The text of a key: parseApiKey's inverse. */
export function formatApiKey(parts: ApiKeyParts): string {
  const body = toBase62(BigInt(`0x${parts.id}${parts.secret.toString('hex')}`), BODY_CHARS);
  return `${API_KEY_PREFIX}${body}${checksum(body)}`;
}

/** A new key: its text is shown once and never stored. */
export function generateApiKey(): ApiKeyParts & { text: string } {
  const bytes = randomBytes(ID_BYTES + SECRET_BYTES);
  const parts = { id: bytes.subarray(0, ID_BYTES).toString('hex'), secret: bytes.subarray(ID_BYTES) };
  return { ...parts, text: formatApiKey(parts) };
}

/** The id and secret of a well-formed key with a matching checksum; null for anything else. */
export function parseApiKey(text: string): ApiKeyParts | null {
  if (text.length !== API_KEY_LENGTH || !SHAPE.test(text)) return null;
  const body = text.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + BODY_CHARS);
  if (checksum(body) !== text.slice(-CHECK_CHARS)) return null;
  const value = fromBase62(body);
  // 54 base62 characters reach past 320 bits: only the one spelling below 2^320 is a key.
  if (value > BODY_MAX) return null;
  const bytes = Buffer.from(value.toString(16).padStart(2 * (ID_BYTES + SECRET_BYTES), '0'), 'hex');
  return { id: bytes.subarray(0, ID_BYTES).toString('hex'), secret: bytes.subarray(ID_BYTES) };
}

/** What is stored for a key: HMAC-SHA256 under the vault's API-key hashing key, over the id and the secret. */
export function hashApiKey(hashKey: Buffer, parts: ApiKeyParts): Buffer {
  return createHmac('sha256', hashKey).update(`phonevault api key v1\0${parts.id}\0`).update(parts.secret).digest();
}

/** Constant-time: how long the comparison takes says nothing about how much of a guess was right. */
export function apiKeyMatches(hashKey: Buffer, parts: ApiKeyParts, stored: Buffer): boolean {
  const computed = hashApiKey(hashKey, parts);
  return stored.length === computed.length && timingSafeEqual(stored, computed);
}
