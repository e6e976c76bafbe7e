import { randomBytes } from 'node:crypto';
import { parsePhoneNumber } from 'libphonenumber-js/max';
import { describe, expect, it } from 'vitest';
import { fingerprintNumber } from '../../src/crypto/fingerprint.js';
import { formatToken, newTokenId, parseToken } from '../../src/crypto/tokens.js';

describe('tokens', () => {
  it('are tok_ and 22 base64url characters, and parse back to their id', () => {
    const id = newTokenId();
    const token = formatToken(id);
    expect(token).toMatch(/^tok_[A-Za-z0-9_-]{22}$/);
    expect(parseToken(token)?.equals(id)).toBe(true);
  });

  it('are unique over many draws', () => {
    const seen = new Set(Array.from({ length: 20_000 }, () => formatToken(newTokenId())));
    expect(seen.size).toBe(20_000);
  });

  // A non-canonical last character would decode to the same id: one id must have exactly one spelling.
  it('refuses non-canonical, short, long and foreign strings', () => {
    const token = formatToken(Buffer.alloc(16));
    expect(token.endsWith('A')).toBe(true);
    for (const bad of [token.slice(0, -1) + 'B', token.slice(0, -1), token + 'A', token.replace('tok_', 'tak_'), '+12015550123', '']) {
      expect(parseToken(bad)).toBeNull();
    }
  });

  it('never parse as a phone number', () => {
    for (let i = 0; i < 5_000; i++) {
      const token = formatToken(newTokenId());
      let valid = false;
      try {
        valid = parsePhoneNumber(token, { defaultCountry: 'US', extract: false })?.isValid() ?? false;
      } catch {
        valid = false;
      }
      expect(valid).toBe(false);
    }
  });
});

describe('fingerprints', () => {
  it('are keyed: equal under one key, different under another, never a bare hash', () => {
    const key = randomBytes(32);
    expect(fingerprintNumber(key, '+12015550123').equals(fingerprintNumber(key, '+12015550123'))).toBe(true);
    expect(fingerprintNumber(key, '+12015550123').equals(fingerprintNumber(randomBytes(32), '+12015550123'))).toBe(false);
    expect(fingerprintNumber(key, '+12015550123').equals(fingerprintNumber(key, '+12015550124'))).toBe(false);
  });
});
