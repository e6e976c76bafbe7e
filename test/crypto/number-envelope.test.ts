import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeAad } from '../../src/crypto/aead.js';
import { envelopeKeyVersion, numberAad, openNumber, sealNumber } from '../../src/crypto/number-envelope.js';
import { newTokenId } from '../../src/crypto/tokens.js';

const key = randomBytes(32);
const context = { tenant: 'acme', tokenId: newTokenId() };

function flip(buffer: Buffer, index: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

describe('number envelope', () => {
  it('builds exactly the length-prefixed AAD of tenant, token id and key version, whatever prefixes it has cached', () => {
    for (const tenant of ['acme', 'globex', 'acme', 'a', 'ÿ-unicode-é', 'acme']) {
      const tokenId = newTokenId();
      for (const version of [1, 2, 0xffffffff]) {
        expect(numberAad({ tenant, tokenId }, version).equals(encodeAad('phonevault:number:v1', [tenant, tokenId, version]))).toBe(true);
      }
    }
  });

  it('round-trips a number and records the key version', () => {
    const envelope = sealNumber(key, 7, context, '+12015550123');
    expect(envelopeKeyVersion(envelope)).toBe(7);
    expect(openNumber(key, context, envelope)).toBe('+12015550123');
  });

  it('uses a fresh IV every time, so equal numbers never give equal envelopes', () => {
    const a = sealNumber(key, 1, context, '+12015550123');
    const b = sealNumber(key, 1, context, '+12015550123');
    expect(a.subarray(5, 17).equals(b.subarray(5, 17))).toBe(false);
    expect(a.equals(b)).toBe(false);
  });

  it('has the same length for every number, hiding how long it is', () => {
    expect(sealNumber(key, 1, context, '+247542011').length).toBe(sealNumber(key, 1, context, '+870301234567890').length);
  });

  it('does not contain the number in clear', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    expect(envelope.includes(Buffer.from('2015550123'))).toBe(false);
  });

  // Every byte after the header is authenticated: IV, ciphertext and tag.
  it('fails when any bit of IV, ciphertext or tag flips', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    for (let index = 5; index < envelope.length; index++) {
      expect(() => openNumber(key, context, flip(envelope, index)), `byte ${index}`).toThrow();
    }
  });

  // The key version is part of the AAD: rewriting it points at another key and fails even with the same key.
  it('fails when the key version in the header is changed', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    const moved = Buffer.from(envelope);
    moved.writeUInt32BE(2, 1);
    expect(() => openNumber(key, context, moved)).toThrow();
  });

  it('fails when the envelope is copied onto another token row', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    expect(() => openNumber(key, { tenant: 'acme', tokenId: newTokenId() }, envelope)).toThrow();
  });

  it('fails when the envelope is copied into another tenant', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    expect(() => openNumber(key, { ...context, tenant: 'acme2' }, envelope)).toThrow();
  });

  it('fails under a wrong key', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    expect(() => openNumber(randomBytes(32), context, envelope)).toThrow();
  });

  it('refuses an unknown envelope version and a truncated envelope', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    expect(() => openNumber(key, context, flip(envelope, 0))).toThrow(/envelope version/);
    expect(() => openNumber(key, context, envelope.subarray(0, 20))).toThrow();
  });
});
