import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { fingerprintNumber } from '../../src/crypto/fingerprint.js';
import { openNumber } from '../../src/crypto/number-envelope.js';
import { formatOf } from '../../src/crypto/tokens.js';
import { openRows, prepareRows, type SealingKeys } from '../../src/vault/bulk.js';
import { createOffload, inlineOffload } from '../../src/vault/offload.js';
import { pack, packOpened, unpack, unpackOpened } from '../../src/vault/offload-protocol.js';
import { NUMBERS } from '../helpers/numbers.js';

const keys: SealingKeys = { version: 3, key: randomBytes(32), fingerprintKey: randomBytes(32) };
const tenant = 'acme';
const offload = createOffload({ threads: 1 });
afterAll(() => offload.close());

// 100 inputs: valid in both spellings, invalid numbers, a bad country, and repeats of one number.
const inputs = Array.from({ length: 100 }, (_, i) => {
  switch (i % 5) {
    case 0:
      return { phone: `+1201555${String(1000 + i).padStart(4, '0')}` };
    case 1:
      return { phone: NUMBERS.gb.national, country: 'GB' };
    case 2:
      return { phone: NUMBERS.invalid.e164 };
    case 3:
      return { phone: NUMBERS.de.e164, country: 'XX' };
    default:
      return { phone: NUMBERS.fr.e164 };
  }
});

describe('offloaded batches', () => {
  for (const [deterministic, format] of [[false, 'opaque'], [true, 'opaque'], [false, 'phone']] as const) {
    it(`parse and seal on a worker exactly as inline (deterministic: ${deterministic}, format: ${format})`, async () => {
      const onThread = await offload.prepareRows(tenant, inputs, keys, { deterministic, format });
      const inline = await inlineOffload.prepareRows(tenant, inputs, keys, { deterministic, format });

      expect(onThread.slots).toEqual(inline.slots);
      expect(onThread.rows.map(({ e164, country, lineType, keyVersion }) => ({ e164, country, lineType, keyVersion }))).toEqual(
        inline.rows.map(({ e164, country, lineType, keyVersion }) => ({ e164, country, lineType, keyVersion })),
      );
      expect(onThread.rows.length).toBe(deterministic ? 22 : 60);
      for (const row of onThread.rows) {
        expect(row.tokenId.length).toBe(16);
        expect(formatOf(row.tokenId)).toBe(format);
        expect(openNumber(keys.key, { tenant, tokenId: row.tokenId, fingerprint: row.fingerprint }, row.envelope)).toBe(row.e164);
        expect(row.fingerprint.equals(fingerprintNumber(keys.fingerprintKey, row.e164))).toBe(true);
      }
      expect(new Set(onThread.rows.map((row) => row.tokenId.toString('hex'))).size).toBe(onThread.rows.length);
    });
  }

  it('serves batches in the order they came, however many wait', async () => {
    const finished: number[] = [];
    // Submitted in waves while the thread is busy, as requests arrive under load.
    const runs: Array<Promise<unknown>> = [];
    for (let wave = 0; wave < 4; wave++) {
      for (let k = 0; k < 3; k++) {
        const id = runs.length;
        runs.push(offload.prepareRows(tenant, inputs, keys, { deterministic: false, format: 'opaque' }).then(() => finished.push(id)));
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await Promise.all(runs);
    expect(finished).toEqual(runs.map((_, id) => id));
  });

  it('refuses to start when threads are asked for and the worker cannot be found, rather than run inline', async () => {
    const { createOffload: fresh } = await import('../../src/vault/offload.js');
    expect(() => fresh({ threads: 1, workerFile: new URL('file:///nowhere/offload-worker.js') })).toThrow(/worker .* is missing/);
  });

  it('open on a worker exactly as inline: numbers, tampered envelopes and missing keys', async () => {
    const { rows } = prepareRows(tenant, inputs, keys, { deterministic: false, format: 'opaque' });
    const stored = rows.map((row) => ({ tokenId: row.tokenId, keyVersion: row.keyVersion, envelope: Buffer.from(row.envelope), fingerprint: row.fingerprint }));
    stored[7]!.envelope[stored[7]!.envelope.length - 1]! ^= 1; // a flipped tag bit
    stored[9] = { ...stored[9]!, tokenId: stored[10]!.tokenId }; // an envelope moved to another token
    stored[11] = { ...stored[11]!, keyVersion: 4 }; // a version whose key is gone
    stored[13] = { ...stored[13]!, fingerprint: stored[14]!.fingerprint }; // a fingerprint moved from another row
    const keyMap = new Map([[keys.version, keys.key]]);

    const onThread = await offload.openRows(tenant, keyMap, stored);
    expect(onThread).toEqual(openRows(tenant, keyMap, stored));
    expect(onThread[7]).toBeNull();
    expect(onThread[9]).toBeNull();
    expect(onThread[11]).toBeUndefined();
    expect(onThread[13]).toBeNull();
    expect(onThread.filter((e164) => typeof e164 === 'string')).toHaveLength(rows.length - 4);
    expect(await offload.openRows('globex', keyMap, stored)).toEqual(stored.map((row) => (row.keyVersion === keys.version ? null : undefined)));
  });

  it('packs buffers, including empty ones, into one and back without copying', () => {
    const buffers = [Buffer.from('ab'), Buffer.alloc(0), randomBytes(49), Buffer.from('z')];
    const packed = pack(buffers);
    const data = Buffer.from(packed.data.buffer, packed.data.byteOffset, packed.data.byteLength);
    const back = unpack(data, packed.ends);
    expect(back.map((b) => b.toString('hex'))).toEqual(buffers.map((b) => b.toString('hex')));
    expect(back[2]!.buffer).toBe(data.buffer);
  });

  it('packs opened numbers into one string and back: numbers, failed envelopes, missing keys, none at all', () => {
    const opened = [NUMBERS.us.e164, null, undefined, NUMBERS.de.e164, undefined, null];
    expect(unpackOpened(packOpened(opened), opened.length)).toEqual(opened);
    expect(unpackOpened(packOpened([undefined]), 1)).toEqual([undefined]);
    expect(unpackOpened(packOpened([]), 0)).toEqual([]);
    expect(() => unpackOpened(packOpened(opened), opened.length + 1)).toThrow('7 opened numbers expected, got 6');
  });
});
