import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { secretWeakness } from '../../src/config/secret-strength.js';

describe('JWT_SECRET strength', () => {
  it('accepts what random generators print, every time', () => {
    for (let i = 0; i < 2_000; i++) {
      for (const secret of [randomBytes(48).toString('base64'), randomBytes(32).toString('base64url'), randomBytes(32).toString('hex'), randomBytes(24).toString('base64')]) {
        expect(secretWeakness(secret), secret).toBeNull();
      }
    }
  });

  it('refuses patterns, placeholders, repetitions and short secrets', () => {
    for (const secret of [
      'abcdefghijklmnopqrstuvwxyz012345', 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef', '0123456789abcdef0123456789abcdef', 'qwertyuiopasdfghjklzxcvbnm123456',
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'abcabcabcabcabcabcabcabcabcabcabcabc', 'Password1!Password1!Password1!Pa', 'my-app-secret-for-development-use',
      'change-me-change-me-change-me-change-me', '1q2w3e4r5t6y7u8i9o0p1q2w3e4r5t6y', 'zyxwvutsrqponmlkjihgfedcba987654', randomBytes(16).toString('base64').slice(0, 20),
      'x'.repeat(31),
    ]) {
      expect(secretWeakness(secret), secret).not.toBeNull();
    }
  });

  it('refuses phrases of words, separated or in camelCase, and a phrase said twice, but not twelve distinct words', () => {
    for (const phrase of [
      'the quick brown fox jumps over the lazy dog', 'phonevault-prod-jwt-signing-key-2024', 'my company name is acme corporation inc',
      'Acme.Prod.Token.Signing.Key.2025', 'our_jwt_hmac_key_for_the_vault_ok', 'correct horse battery staple correct horse battery staple extra words here ok',
      'ThisIsOurTokenSigningKeyForProduction2024!',
    ]) {
      expect(secretWeakness(phrase), phrase).toMatch(/not random enough|placeholder/);
    }
    // About 130 bits if the words are drawn at random, as diceware draws them.
    expect(secretWeakness('abandon ability able about above absent absorb abstract absurd abuse access accident')).toBeNull();
  });
});
