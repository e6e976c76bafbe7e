import { describe, expect, it } from 'vitest';
import { API_KEY_LENGTH, apiKeyMatches, formatApiKey, generateApiKey, hashApiKey, parseApiKey } from '../../src/crypto/api-key.js';

const hashKey = Buffer.alloc(32, 7);

describe('API keys', () => {
  it('look alike, carry 256 random bits and parse back to their parts', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const key = generateApiKey();
      expect(key.text).toMatch(/^pvk_[0-9A-Za-z]{60}$/);
      expect(key.text).toHaveLength(API_KEY_LENGTH);
      expect(key.secret).toHaveLength(32);
      expect(key.id).toMatch(/^[0-9a-f]{16}$/);
      const parts = parseApiKey(key.text)!;
      expect(formatApiKey(parts)).toBe(key.text);
      expect(parts.id).toBe(key.id);
      expect(parts.secret.equals(key.secret)).toBe(true);
      seen.add(key.secret.toString('hex'));
    }
    expect(seen.size).toBe(200);
  });

  it('refuse every one-character change, by the checksum or the shape', () => {
    const { text } = generateApiKey();
    const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    for (let at = 4; at < text.length; at++) {
      for (const char of [alphabet[(alphabet.indexOf(text[at]!) + 1) % 62]!, '-', '_', '=', ' ', 'é']) {
        expect(parseApiKey(text.slice(0, at) + char + text.slice(at + 1)), `${at}:${char}`).toBeNull();
      }
    }
    // Two neighbours swapped, a character dropped or added, another prefix or case, whitespace around it.
    expect(parseApiKey(text.slice(0, 10) + text[11] + text[10] + text.slice(12))).toSatisfy((parsed) => parsed === null || text[10] === text[11]);
    for (const variant of [text.slice(0, -1), `${text}0`, text.replace('pvk_', 'PVK_'), text.replace('pvk_', 'pvx_'), ` ${text}`, `${text}\n`, text.toUpperCase(), ''])
      expect(parseApiKey(variant)).toBeNull();
  });

  it('have one spelling only: a body at or past 2^320 is refused even with its checksum', async () => {
    const { crc32 } = await import('node:zlib');
    const body = 'z'.repeat(54);
    let check = BigInt(crc32(body));
    let suffix = '';
    for (let i = 0; i < 6; i++) {
      suffix = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'[Number(check % 62n)] + suffix;
      check /= 62n;
    }
    expect(parseApiKey(`pvk_${body}${suffix}`)).toBeNull();
  });

  it('store a keyed hash that matches only the same id, secret and hashing key', () => {
    const key = generateApiKey();
    const stored = hashApiKey(hashKey, key);
    expect(stored).toHaveLength(32);
    expect(stored.toString('hex')).not.toContain(key.secret.toString('hex'));
    expect(apiKeyMatches(hashKey, key, stored)).toBe(true);
    expect(apiKeyMatches(Buffer.alloc(32, 8), key, stored)).toBe(false);
    const flipped = Buffer.from(key.secret);
    flipped[31]! ^= 1;
    expect(apiKeyMatches(hashKey, { id: key.id, secret: flipped }, stored)).toBe(false);
    expect(apiKeyMatches(hashKey, { id: '0000000000000000', secret: key.secret }, stored)).toBe(false);
    expect(apiKeyMatches(hashKey, key, stored.subarray(0, 16))).toBe(false);
  });
});
