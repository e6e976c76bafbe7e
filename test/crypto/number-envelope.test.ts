import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeAad, seal } from '../../src/crypto/aead.js';
import { envelopeKeyVersion, isLegacyEnvelope, numberAad, openNumber, sealNumber } from '../../src/crypto/number-envelope.js';
import { newTokenId } from '../../src/crypto/tokens.js';

const key = randomBytes(32);
const context = { tenant: 'acme', tokenId: newTokenId(), fingerprint: randomBytes(32) };

/** An envelope as releases before the fingerprint was bound wrote it (format 1). */
function legacyEnvelope(keyVersion: number, ctx: typeof context, e164: string): Buffer {
  const plain = Buffer.alloc(16);
  plain.write(e164, 'latin1');
  const header = Buffer.from([1, 0, 0, 0, 0]);
  header.writeUInt32BE(keyVersion, 1);
  return Buffer.concat([header, seal(key, plain, numberAad(ctx, keyVersion, 1))]);
}

function flip(buffer: Buffer, index: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

describe('number envelope', () => {
  it('builds exactly the length-prefixed AAD of tenant, token id, key version and fingerprint, whatever prefixes it has cached', () => {
    for (const tenant of ['acme', 'globex', 'acme', 'a', 'ÿ-unicode-é', 'acme', '1acme', '2acme']) {
      const tokenId = newTokenId();
      const fingerprint = randomBytes(32);
      for (const version of [1, 2, 0xffffffff]) {
        expect(numberAad({ tenant, tokenId, fingerprint }, version).equals(encodeAad('phonevault:number:v2', [tenant, tokenId, version, fingerprint]))).toBe(true);
        expect(numberAad({ tenant, tokenId, fingerprint }, version, 1).equals(encodeAad('phonevault:number:v1', [tenant, tokenId, version]))).toBe(true);
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
    expect(() => openNumber(key, { ...context, tokenId: newTokenId() }, envelope)).toThrow();
  });

  it('fails when the envelope is copied into another tenant', () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    expect(() => openNumber(key, { ...context, tenant: 'acme2' }, envelope)).toThrow();
  });

  // Erasure finds a number's rows by their fingerprint column: a row moved out from under its number must not open.
  it("fails when the row's fingerprint was changed, to any other value", () => {
    const envelope = sealNumber(key, 1, context, '+12015550123');
    for (const fingerprint of [randomBytes(32), Buffer.alloc(32), flip(context.fingerprint, 31), context.fingerprint.subarray(0, 31)]) {
      expect(() => openNumber(key, { ...context, fingerprint }, envelope)).toThrow();
    }
  });

  it('still opens format 1 envelopes, which bound no fingerprint, and tells them apart', () => {
    const legacy = legacyEnvelope(3, context, '+12015550123');
    expect(isLegacyEnvelope(legacy)).toBe(true);
    expect(isLegacyEnvelope(sealNumber(key, 3, context, '+12015550123'))).toBe(false);
    expect(envelopeKeyVersion(legacy)).toBe(3);
    expect(openNumber(key, context, legacy)).toBe('+12015550123');
    expect(() => openNumber(key, { ...context, tokenId: newTokenId() }, legacy)).toThrow();
    // A format 2 envelope relabelled as format 1 does not open: the label is in the AAD.
    const relabelled = Buffer.from(sealNumber(key, 3, context, '+12015550123'));
    relabelled[0] = 1;
    expect(() => openNumber(key, context, relabelled)).toThrow();
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
