import { parseToken } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import { fingerprintOf } from './lookup.js';
import type { PhoneInput } from './tokenize.js';
import type { Caller, VaultDeps } from './vault.js';

export async function eraseToken(deps: VaultDeps, caller: Caller, token: string): Promise<void> {
  const id = parseToken(token);
  if (!id || !(await deps.maintenance.deleteToken(caller.tenant, id))) throw new VaultError('not_found', 'no such token');
}

/** The right to erasure: every token of one number in the caller's tenant, in one statement. */
export async function eraseNumber(deps: VaultDeps, caller: Caller, input: PhoneInput): Promise<number> {
  const fingerprint = await fingerprintOf(deps, caller, input);
  return fingerprint ? deps.maintenance.deleteByFingerprint(caller.tenant, fingerprint) : 0;
}
