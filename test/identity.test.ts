import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { holdsPhoneNumber, isValidClient, isValidTenant, parseScopes } from '../src/identity.js';
import { isSafeText } from '../src/text.js';

describe('identifiers from credentials', () => {
  it('refuses control characters, line separators and lone surrogates anywhere', () => {
    for (const bad of ['a\u0000b', 'a\u0007', '\u001fx', 'x\u007f', 'x\u0085', 'x\u009f', 'a\u2028b', 'a\u2029', 'a\ud800', '\udc00a', 'a\ud800b', 'x\n', 'x\r', 'x\t']) {
      expect(isSafeText(bad), JSON.stringify(bad)).toBe(false);
      expect(isValidClient(`crm${bad}`), JSON.stringify(bad)).toBe(false);
      expect(isValidTenant(`acme${bad}`), JSON.stringify(bad)).toBe(false);
    }
    expect(isSafeText('crm-ü客 😀')).toBe(true);
  });

  it('refuses over-long and empty identifiers', () => {
    expect(isValidClient('c'.repeat(128))).toBe(true);
    expect(isValidClient('c'.repeat(129))).toBe(false);
    expect(isValidTenant('t'.repeat(64))).toBe(true);
    expect(isValidTenant('t'.repeat(65))).toBe(false);
    for (const empty of ['', undefined, null, 42, ['crm'], { sub: 'crm' }]) {
      expect(isValidClient(empty)).toBe(false);
      expect(isValidTenant(empty)).toBe(false);
    }
  });

  it('refuses an identifier that is or holds a phone number, in every spelling a credential could carry', () => {
    for (const phoneLike of [
      '+12015550123', '12015550123', '2015550123', '201-555-0123', '201.555.0123', '+1-201-555-0123', 'tel:+12015550123',
      'tel:2015550123', 'sms|12015550123', '12015550123@phone', 'crm+12015550123', 'auth0|+447400123456', 'user/4915123456789',
      'crm_2015550123', 'x=2015550123', '~+33612345678', '201_555_0123', 'x:201:555:0123', 'a=+1=201=555=0123', 'user-2015550123',
      'a.12015550123', 'a+-12015550123', 'tel2015550123', 'a2015550123b', 'svc-2015550123-v2', '+1 (201) 555-0123',
      // Hex-looking, but not a random id's shape, or glued to one: the digits are read.
      '2015550123-aaaa-bbbb-cccc-dddddddddddd', '12015550123abcdef', '2015550123ffffff', '0000000000000000a2015550123',
      '12015550123abcdefabcdefabcdefabcdef', 'x2015550123-5f7c8ec7c33c6c004bbafe82',
    ]) {
      expect(holdsPhoneNumber(phoneLike), phoneLike).toBe(true);
      expect(isValidClient(phoneLike), phoneLike).toBe(false);
    }
    for (const tenant of ['2015550123', '201-555-0123', '447400123456']) expect(isValidTenant(tenant), tenant).toBe(false);
  });

  it('keeps the identifiers identity providers issue: UUIDs, numeric subjects, hex and base64 ids, names with numbers', () => {
    for (const id of [
      'crm', 'helpdesk-2', 'svc.billing', 'auth0|5f7c8ec7c33c6c004bbafe82', '0oa1b2c3d4e5f6g7h8i9', 'abc123@clients',
      '110169484474386276334', 'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ', 'a+1b', 'team-42', 'spiffe://acme/ns/prod/sa/crm', '550e8400-e29b-41d4-a716-446655440000',
      'svc-v1.2.3', 'auth0|64b8f0c2a1d3e4f506172839', '5f7c8ec7c33c6c004bbafe82',
    ]) {
      expect(isValidClient(id), id).toBe(true);
    }
    // Nearly every random UUID is a valid client id: only an all-digit one could read as a number.
    const uuids = Array.from({ length: 20_000 }, () => randomUUID());
    expect(uuids.filter((uuid) => !isValidClient(uuid)).length).toBeLessThanOrEqual(1);
    // Object ids and hashes (24, 32, 40 or 64 hex characters) are opaque, whatever digits they hold.
    for (const bytes of [12, 16, 20, 32]) {
      const hexIds = Array.from({ length: 5_000 }, () => randomBytes(bytes).toString('hex'));
      expect(hexIds.filter((id) => !isValidClient(id) || !isValidClient(`auth0|${id}`)).length, `${bytes} bytes`).toBeLessThanOrEqual(1);
    }
  });

  it('reads scopes as data: space-separated, bounded, safe text only', () => {
    expect([...parseScopes('tokenize  detokenize')!]).toEqual(['tokenize', 'detokenize']);
    expect(parseScopes(undefined)!.size).toBe(0);
    expect(parseScopes('tokenize\u0000admin')).toBeNull();
    expect(parseScopes(['admin'])).toBeNull();
    expect(parseScopes('a'.repeat(1025))).toBeNull();
  });
});
