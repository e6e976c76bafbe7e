import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pkcs11Settings } from '../../src/config/index.js';

/** Debian's SoftHSM2 module (package softhsm2, installed by .ci/run). */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsm {
  tokenLabel: string;
  pin: string;
  /** The PKCS11_* variables for a key of this label on the token. */
  env(keyLabel: string): Record<string, string>;
  settings(keyLabel: string): Pkcs11Settings;
  /** The token's storage goes away (as an HSM partition lost) and comes back: an outage from outside the vault. */
  takeAway(): void;
  bringBack(): void;
  /** While the token is away: another token with the same label and PIN in its place (no keys yet). */
  impostor(): void;
  drop(): void;
}

/**
 * A SoftHSM2 token of its own in a temporary folder, initialised with a random user PIN. SoftHSM2 reads its
 * configuration from SOFTHSM2_CONF when the module is initialised, so this sets it for the whole test process:
 * one token per test file (each file runs in a process of its own).
 */
export function createSoftHsm(): SoftHsm {
  const dir = mkdtempSync(join(tmpdir(), 'pv-softhsm-'));
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  const tokenLabel = `pv-${randomBytes(4).toString('hex')}`;
  const pin = randomBytes(6).toString('hex');
  // The test set-up's own PINs on softhsm2-util's argv; the vault itself takes its PIN only from the environment or a file.
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--so-pin', randomBytes(6).toString('hex'), '--pin', pin], { stdio: 'ignore', env: process.env });
  return {
    tokenLabel,
    pin,
    env: (keyLabel) => ({ KEK_PROVIDER: 'pkcs11', PKCS11_MODULE: SOFTHSM_MODULE, PKCS11_TOKEN_LABEL: tokenLabel, PKCS11_PIN: pin, PKCS11_KEY_LABEL: keyLabel }),
    settings: (keyLabel) => ({ module: SOFTHSM_MODULE, tokenLabel, slot: null, pin: Buffer.from(pin), keyLabel, kekId: 'hsm' }),
    takeAway: () => renameSync(join(dir, 'tokens'), join(dir, 'away')),
    bringBack: () => {
      rmSync(join(dir, 'tokens'), { recursive: true, force: true });
      renameSync(join(dir, 'away'), join(dir, 'tokens'));
    },
    impostor: () => {
      mkdirSync(join(dir, 'tokens'));
      execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--so-pin', randomBytes(6).toString('hex'), '--pin', pin], { stdio: 'ignore', env: process.env });
    },
    drop: () => rmSync(dir, { recursive: true, force: true }),
  };
}
