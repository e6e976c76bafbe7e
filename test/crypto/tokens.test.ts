import { randomBytes } from 'node:crypto';
import { getCountries, isValidPhoneNumber, parsePhoneNumber, parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { describe, expect, it } from 'vitest';
import { fingerprintNumber } from '../../src/crypto/fingerprint.js';
import { formatOf, formatToken, isPhoneShapedId, newTokenId, parseToken, TOKEN_PATTERN } from '../../src/crypto/tokens.js';
import { parsePhone } from '../../src/phone/parse.js';

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

describe('phone-shaped tokens', () => {
  const draws = Array.from({ length: 20_000 }, () => newTokenId('phone'));

  it('are +28 and 13 digits, a 15-digit E.164 string, and parse back to their id', () => {
    for (const id of draws.slice(0, 1000)) {
      const token = formatToken(id);
      expect(token).toMatch(/^\+28[0-9]{13}$/);
      expect(token).toMatch(/^\+[1-9][0-9]{1,14}$/); // the usual E.164 column check
      expect(token.length).toBe(16);
      expect(formatOf(id)).toBe('phone');
      expect(parseToken(token)?.equals(id)).toBe(true);
      expect(TOKEN_PATTERN.test(token)).toBe(true);
    }
  });

  it('draw every digit evenly, and do not repeat', () => {
    expect(new Set(draws.map((id) => id.toString('latin1'))).size).toBe(draws.length);
    // 13 positions × 20,000 draws: each digit ~26,000 times; a bias of a few percent would show.
    const counts = new Array(10).fill(0);
    for (const id of draws) for (let i = 3; i < 16; i++) counts[id[i]! - 0x30]++;
    const expected = (draws.length * 13) / 10;
    for (const count of counts) expect(Math.abs(count - expected) / expected).toBeLessThan(0.03);
  });

  // Their digits without the `+` can read as a German national number (Germany's open plan admits almost any
  // 15 digits, under any calling code's digits alike): the `+` is part of the token (docs/design-decisions.md).
  it('are no valid number to libphonenumber, in their own region or with any region as the default', () => {
    for (const id of draws) {
      const token = formatToken(id);
      expect(isValidPhoneNumber(token)).toBe(false);
      expect(parsePhoneNumberFromString(token)?.country).toBeUndefined();
    }
    const regions = getCountries();
    for (const id of draws.slice(0, 100)) {
      const token = formatToken(id);
      for (const region of regions) {
        expect(isValidPhoneNumber(token, region)).toBe(false);
      }
    }
  });

  it('are refused as numbers to tokenize, so a token is never tokenized as if it were a number', () => {
    for (const id of draws.slice(0, 200)) {
      for (const input of [formatToken(id), formatToken(id).slice(1), `00${formatToken(id).slice(1)}`]) {
        expect(() => parsePhone(input)).toThrow();
        expect(() => parsePhone(input, 'US')).toThrow();
      }
    }
  });

  it('and opaque ids never overlap: an opaque spelling of a phone-shaped id does not parse, and opaque draws are never phone-shaped', () => {
    const id = draws[0]!;
    expect(parseToken(`tok_${id.toString('base64url')}`)).toBeNull();
    for (let i = 0; i < 20_000; i++) expect(isPhoneShapedId(newTokenId())).toBe(false);
    expect(formatOf(newTokenId())).toBe('opaque');
  });

  it('refuse near misses: other prefixes, lengths, non-digits and look-alike digits', () => {
    const token = formatToken(draws[1]!);
    const bad = [
      token.slice(0, -1), // 14 digits
      `${token}0`, // 16 digits
      token.replace('+28', '+29'),
      token.replace('+28', '28'),
      token.replace('+28', '+ 28'),
      `${token.slice(0, 5)}-${token.slice(5, -1)}`,
      token.slice(0, -1) + '\u0660', // Arabic-Indic zero
      token.slice(0, -1) + '\uff10', // fullwidth zero
      ` ${token}`,
      `${token}\n`,
      '+12015550123',
    ];
    for (const candidate of bad) expect(parseToken(candidate)).toBeNull();
    for (const candidate of bad) expect(TOKEN_PATTERN.test(candidate)).toBe(false);
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
