import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeAad, open, seal } from '../../src/crypto/aead.js';

describe('encodeAad', () => {
  it('writes each field as a u16 length and its bytes: strings in UTF-8, numbers as u32, buffers as they are', () => {
    const aad = encodeAad('l', ['é', Buffer.from([9, 8]), 258]);
    expect(aad.toString('hex')).toBe(['0001', '6c', '0002', 'c3a9', '0002', '0908', '0004', '00000102'].join(''));
  });

  it('never encodes two different field lists alike', () => {
    const encodings = [
      encodeAad('x', ['ab', 'c']),
      encodeAad('x', ['a', 'bc']),
      encodeAad('x', ['abc']),
      encodeAad('x', ['abc', '']),
      encodeAad('xa', ['bc']),
      encodeAad('x', [Buffer.from([0, 3])]),
      encodeAad('x', [3]),
    ].map((buffer) => buffer.toString('hex'));
    expect(new Set(encodings).size).toBe(encodings.length);
  });

  it('refuses a field too long for its length prefix', () => {
    expect(() => encodeAad('x', ['a'.repeat(0x10000)])).toThrow();
    expect(() => encodeAad('x', [Buffer.alloc(0x10000)])).toThrow();
    expect(encodeAad('x', ['a'.repeat(0xffff)]).length).toBe(2 + 1 + 2 + 0xffff);
  });
});

describe('seal and open', () => {
  const key = randomBytes(32);
  const aad = encodeAad('test', ['tenant']);

  it('round-trips, and refuses a changed byte anywhere, another AAD or another key', () => {
    const sealed = seal(key, Buffer.from('+12015550123'), aad);
    expect(open(key, sealed, aad).toString()).toBe('+12015550123');
    for (let i = 0; i < sealed.length; i++) {
      const tampered = Buffer.from(sealed);
      tampered[i]! ^= 1;
      expect(() => open(key, tampered, aad)).toThrow();
    }
    expect(() => open(key, sealed, encodeAad('test', ['other']))).toThrow();
    expect(() => open(randomBytes(32), sealed, aad)).toThrow();
    expect(() => open(key, sealed.subarray(0, 27), aad)).toThrow('too short');
  });
});
