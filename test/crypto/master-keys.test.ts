import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { envKekSet, parseMasterKeys } from '../../src/crypto/master-keys.js';

const a = randomBytes(32).toString('base64');
const b = randomBytes(32).toString('base64');

describe('master keys', () => {
  it('parses a bare key as the "default" id and a list with the first one active', () => {
    expect(parseMasterKeys(a).map((k) => k.id)).toEqual(['default']);
    expect(envKekSet(parseMasterKeys(`new:${a},old:${b}`)).activeId).toBe('new');
  });

  it('rejects keys that are not 32 bytes, weak, unnamed in a list or duplicated — without echoing them', () => {
    const short = randomBytes(16).toString('base64');
    for (const text of [short, 'not base64 at all!', Buffer.alloc(32).toString('base64'), `${a},${b}`, `x:${a},x:${b}`, '']) {
      let message = '';
      try {
        parseMasterKeys(text);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).not.toBe('');
      expect(message).not.toContain(short);
      expect(message).not.toContain(a);
    }
  });

  it('wraps under the active key and unwraps with any configured key', async () => {
    const old = envKekSet(parseMasterKeys(`old:${b}`));
    const raw = randomBytes(32);
    const wrapped = await old.wrap('acme', 'data', 1, raw);
    const rotated = envKekSet(parseMasterKeys(`new:${a},old:${b}`));
    expect((await rotated.unwrap('acme', 'data', 1, wrapped)).equals(raw)).toBe(true);
    expect((await rotated.wrap('acme', 'data', 1, raw)).kekId).toBe('new');
  });

  // The AAD binds tenant, purpose and version: a wrapped key moved to another slot does not unwrap.
  it('refuses a wrapped key moved to another tenant, purpose or version, or under a wrong master key', async () => {
    const keys = envKekSet(parseMasterKeys(a));
    const wrapped = await keys.wrap('acme', 'data', 1, randomBytes(32));
    await expect(keys.unwrap('other', 'data', 1, wrapped)).rejects.toThrow();
    await expect(keys.unwrap('acme', 'fingerprint', 1, wrapped)).rejects.toThrow();
    await expect(keys.unwrap('acme', 'data', 2, wrapped)).rejects.toThrow();
    await expect(envKekSet(parseMasterKeys(b)).unwrap('acme', 'data', 1, wrapped)).rejects.toThrow();
    await expect(keys.unwrap('acme', 'data', 1, { ...wrapped, kekId: 'missing' })).rejects.toThrow(/not configured/);
  });
});
