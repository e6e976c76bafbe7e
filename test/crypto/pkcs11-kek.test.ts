import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KekConfig } from '../../src/config/index.js';
import { KekUnavailableError } from '../../src/crypto/kek.js';
import { CKA, CKK_AES, CKO_SECRET_KEY, Pkcs11Module } from '../../src/crypto/pkcs11.js';
import { Pkcs11Kek } from '../../src/crypto/pkcs11-kek.js';
import { bearer, uniqueName } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase } from '../helpers/database.js';
import { NUMBERS } from '../helpers/numbers.js';
import { expectBoundToItsKey, kekScenarios } from '../helpers/kek-scenarios.js';
import { createSoftHsm, SOFTHSM_MODULE, type SoftHsm } from '../helpers/softhsm.js';

// Issue 16: the KEK inside an HSM, through PKCS#11, tested against a real SoftHSM2 token.
let hsm: SoftHsm;
beforeAll(async () => {
  hsm = createSoftHsm();
  expect((await runCli(['kek', 'create'], hsm.env('kek'))).code).toBe(0);
});
afterAll(() => hsm.drop());

const aad = Buffer.from('phonevault:test');

/** A key made with the binding itself, with attributes `phonevault kek create` would never give. */
async function makeKey(label: string, attributes: Array<[number, Buffer | number | boolean]>): Promise<void> {
  const module = Pkcs11Module.open(SOFTHSM_MODULE);
  try {
    const slot = (await module.tokens()).find((token) => token.label === hsm.tokenLabel)!.slot;
    const session = await module.openSession(slot, true);
    await module.login(session, Buffer.from(hsm.pin));
    await module.generateAesKey(session, [[CKA.CLASS, CKO_SECRET_KEY], [CKA.KEY_TYPE, CKK_AES], [CKA.VALUE_LEN, 32], [CKA.LABEL, Buffer.from(label)], [CKA.TOKEN, true], [CKA.ENCRYPT, true], [CKA.DECRYPT, true], ...attributes]);
    await module.closeSession(session);
  } finally {
    await module.finalize();
  }
}

describe('the PKCS#11 KEK', () => {
  it('wraps with a fresh IV each time and unwraps only with the same AAD and an untouched blob', async () => {
    const kek = await Pkcs11Kek.open(hsm.settings('kek'));
    try {
      const raw = randomBytes(32);
      const [one, two] = [await kek.wrap(raw, aad), await kek.wrap(raw, aad)];
      expect(one.length).toBe(12 + 32 + 16);
      expect(one.equals(two)).toBe(false);
      expect((await kek.unwrap(one, aad)).equals(raw)).toBe(true);
      await expect(kek.unwrap(one, Buffer.from('phonevault:other'))).rejects.toThrow(/refused/);
      for (const at of [0, 12, one.length - 1]) {
        const tampered = Buffer.from(one);
        tampered[at]! ^= 1;
        const error = await kek.unwrap(tampered, aad).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(Error);
        expect(error).not.toBeInstanceOf(KekUnavailableError);
      }
      await expect(kek.unwrap(one.subarray(0, 20), aad)).rejects.toThrow(/too short/);
      await expectBoundToItsKey(kek, raw);
    } finally {
      await kek.close();
    }
  });

  it('keeps working after garbage collection, which unloads a library nothing holds', () => {
    // A process of its own, with gc() exposed: the vault as shipped (a capped heap) collected the library under
    // load and crashed on its next call.
    const script = `
      const { Pkcs11Kek } = await import(${JSON.stringify(new URL('../../dist/crypto/pkcs11-kek.js', import.meta.url).pathname)});
      const kek = await Pkcs11Kek.open({ ...${JSON.stringify({ ...hsm.settings('kek'), pin: undefined, slot: null })}, pin: Buffer.from(${JSON.stringify(hsm.pin)}) });
      for (let i = 0; i < 3; i++) { globalThis.gc(); await new Promise((resolve) => setTimeout(resolve, 10)); }
      const blob = await kek.wrap(Buffer.alloc(32, 7), Buffer.from('aad'));
      process.stdout.write((await kek.unwrap(blob, Buffer.from('aad'))).toString('hex'));
      await kek.close();`;
    const child = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { env: { PATH: process.env.PATH, SOFTHSM2_CONF: process.env.SOFTHSM2_CONF }, encoding: 'utf8' });
    expect(child.signal).toBeNull();
    expect(child.status, child.stderr).toBe(0);
    expect(child.stdout).toBe('07'.repeat(32));
  });

  it('is created inside the token as a sensitive, never extractable AES-256 key, once', async () => {
    const module = Pkcs11Module.open(SOFTHSM_MODULE);
    try {
      const slot = (await module.tokens()).find((token) => token.label === hsm.tokenLabel)!.slot;
      const session = await module.openSession(slot);
      await module.login(session, Buffer.from(hsm.pin));
      const [key, ...others] = await module.findObjects(session, [[CKA.CLASS, CKO_SECRET_KEY], [CKA.LABEL, Buffer.from('kek')]]);
      expect(others).toEqual([]);
      const attributes = await module.attributes(session, key!, [CKA.SENSITIVE, CKA.EXTRACTABLE, 0x11 /* CKA_VALUE */]);
      expect(attributes[CKA.SENSITIVE]).toEqual(Buffer.from([1]));
      expect(attributes[CKA.EXTRACTABLE]).toEqual(Buffer.from([0]));
      expect(attributes[0x11]).toBeNull();
      await module.closeSession(session);
    } finally {
      await module.finalize();
    }
    const again = await runCli(['kek', 'create'], hsm.env('kek'));
    expect(again.code).not.toBe(0);
    expect(again.err).toContain('PKCS11_KEY_LABEL: the token already holds a key with that label');
  });
});

describe('start-up with KEK_PROVIDER=pkcs11', () => {
  let url: string;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    ({ url, drop } = await createTestDatabase());
    await makeKey('extractable', [[CKA.SENSITIVE, false], [CKA.EXTRACTABLE, true]]);
    await makeKey('not-sensitive', [[CKA.SENSITIVE, false], [CKA.EXTRACTABLE, false]]);
    // A key whose bytes existed outside the HSM, imported as sensitive and non-extractable.
    const keyFile = join(mkdtempSync(join(tmpdir(), 'pv-aes-')), 'key');
    // softhsm2-util reads the key file as a line: a newline among the bytes (one key in eight) cut it short. A
    // carriage return or NUL is left out too, untried, so that no other line-reading habit can shorten it.
    let keyBytes = randomBytes(32);
    while (keyBytes.includes(0x0a) || keyBytes.includes(0x0d) || keyBytes.includes(0x00)) keyBytes = randomBytes(32);
    writeFileSync(keyFile, keyBytes);
    execFileSync('softhsm2-util', ['--import', keyFile, '--aes', '--token', hsm.tokenLabel, '--label', 'imported', '--id', '0a', '--pin', hsm.pin], { stdio: 'ignore', env: process.env });
  });
  afterAll(() => drop());

  const serve = (env: Record<string, string>) =>
    runCli(['serve'], { DATABASE_URL: url, JWT_SECRET: randomBytes(32).toString('base64'), JWT_ISSUER: 'https://issuer.test', JWT_AUDIENCE: 'phonevault-test', PORT: '0', ...env });

  it('stops, naming the setting and never printing the PIN, for every wrong setting', async () => {
    const pinFile = join(mkdtempSync(join(tmpdir(), 'pv-pin-')), 'pin');
    writeFileSync(pinFile, 'not-the-pin\n');
    const { PKCS11_PIN: _, ...withoutPin } = hsm.env('kek');
    const cases: Array<[Record<string, string>, string]> = [
      [{ ...hsm.env('kek'), PKCS11_PIN: 'wrong-pin-1' }, 'PKCS11_PIN / PKCS11_PIN_FILE: the token refused the PIN'],
      [{ ...withoutPin, PKCS11_PIN_FILE: pinFile }, 'PKCS11_PIN / PKCS11_PIN_FILE: the token refused the PIN'],
      [{ ...hsm.env('kek'), PKCS11_MODULE: '/usr/lib/no-such-module.so' }, 'PKCS11_MODULE: the PKCS#11 library cannot be loaded'],
      [{ ...hsm.env('kek'), PKCS11_TOKEN_LABEL: 'no-such-token' }, 'PKCS11_TOKEN_LABEL: no token has that label'],
      [{ ...hsm.env('no-such-key') }, 'PKCS11_KEY_LABEL: the token holds no secret key with that label'],
      [{ ...hsm.env('extractable') }, 'PKCS11_KEY_LABEL: the key is extractable or not sensitive'],
      [{ ...hsm.env('not-sensitive') }, 'PKCS11_KEY_LABEL: the key is extractable or not sensitive'],
      [{ ...hsm.env('imported') }, 'PKCS11_KEY_LABEL: the key has not always been sensitive and never extractable'],
      [{ ...hsm.env('kek'), PKCS11_PIN_FILE: pinFile }, 'PKCS11_PIN and PKCS11_PIN_FILE are both set'],
      [{ ...hsm.env('kek'), VAULT_MASTER_KEY: randomBytes(32).toString('base64') }, 'VAULT_MASTER_KEY: is set but KEK_PROVIDER does not list env'],
      [{ ...withoutPin }, 'PKCS11_PIN or PKCS11_PIN_FILE: is required'],
      [{ KEK_PROVIDER: 'env,hsm' }, 'KEK_PROVIDER'],
    ];
    // The right PIN from a file (with the newline an editor leaves) is taken.
    const rightPinFile = join(mkdtempSync(join(tmpdir(), 'pv-pin-')), 'pin');
    writeFileSync(rightPinFile, `${hsm.pin}\n`);
    const made = await runCli(['kek', 'create'], { ...withoutPin, PKCS11_KEY_LABEL: 'from-pin-file', PKCS11_PIN_FILE: rightPinFile });
    expect(made.code, made.err).toBe(0);
    expect(made.out).not.toContain(hsm.pin);
    for (const [env, message] of cases) {
      const res = await serve(env);
      expect(res.code, message).toBe(78);
      expect(res.err, message).toContain(message);
      expect(res.err).not.toContain(hsm.pin);
      expect(res.err).not.toContain('wrong-pin-1');
      expect(res.err).not.toContain('not-the-pin');
    }
  });
});

describe('an operator moving from an env key to an HSM key, online, and an HSM outage', () => {
  const hsmConfig = (): KekConfig => ({ providers: ['pkcs11'], masterKeys: [], pkcs11: hsm.settings('kek'), awskms: null });
  const { app } = kekScenarios(() => ({
    provider: 'pkcs11',
    kekId: 'hsm',
    env: hsm.env('kek'),
    config: hsmConfig(),
    otherKeyEnv: hsm.env('other'),
    takeAway: () => hsm.takeAway(),
    bringBack: () => hsm.bringBack(),
    secrets: [hsm.pin],
  }));
  beforeAll(() => makeKey('other', [[CKA.SENSITIVE, true], [CKA.EXTRACTABLE, false]]));

  it('never wraps with another key found under the same label after a reconnect', async () => {
    const instance = await app({ kek: hsmConfig() });
    const tokenize = (who: string) => instance.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant: who }), payload: { phone: NUMBERS.us.e164 } });
    expect((await tokenize(uniqueName('e'))).statusCode).toBe(201);
    hsm.takeAway();
    try {
      hsm.impostor();
      // Made by an operator's own process: this one's module sees the new token only once it initialises again.
      const made = spawnSync(process.execPath, [new URL('../../bin/phonevault.js', import.meta.url).pathname, 'kek', 'create'], { env: { PATH: process.env.PATH, SOFTHSM2_CONF: process.env.SOFTHSM2_CONF, ...hsm.env('kek') }, encoding: 'utf8' });
      expect(made.status, made.stderr).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      // A new tenant needs a new data key wrapped: refused, rather than wrapped by the impostor key.
      const refused = await tokenize(uniqueName('f'));
      expect(refused.statusCode).toBe(503);
      expect(instance.logs.some((line) => line.msg === 'the key found under PKCS11_KEY_LABEL is not the one this vault started with; not used')).toBe(true);
    } finally {
      hsm.bringBack();
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await tokenize(uniqueName('g'))).statusCode).toBe(201);
  });
});
