import { VaultError } from '../errors.js';
import type { DataKeyInfo } from '../store/keys-repository.js';
import type { Caller, VaultDeps } from './vault.js';

export interface KeyVersionReport extends DataKeyInfo {
  tokens: number;
}

export async function rotateKey(deps: VaultDeps, caller: Caller): Promise<number> {
  return deps.keyring.rotate(caller.tenant);
}

export async function listKeys(deps: VaultDeps, caller: Caller): Promise<KeyVersionReport[]> {
  const [versions, counts] = await Promise.all([deps.keyAdmin.listVersions(caller.tenant), deps.maintenance.countByVersion(caller.tenant)]);
  return versions.map((version) => ({ ...version, tokens: counts.get(version.version) ?? 0 }));
}

const REFUSALS = {
  not_found: ['not_found', 'no such key version'],
  active: ['invalid_request', 'the active version cannot be destroyed; rotate first'],
  in_use: ['invalid_request', 'tokens still use this version; run `phonevault rewrap` first'],
  too_recent: ['invalid_request', 'this version was retired moments ago; retry in a minute'],
  already_destroyed: ['invalid_request', 'this version is already destroyed'],
} as const;

/** Destroys a retired, drained version: it can never encrypt or decrypt again. */
export async function destroyKeyVersion(deps: VaultDeps, caller: Caller, version: number): Promise<void> {
  const outcome = await deps.keyAdmin.destroyVersion(caller.tenant, version);
  deps.keyring.forget(caller.tenant);
  if (outcome !== 'destroyed') {
    const [code, detail] = REFUSALS[outcome];
    throw new VaultError(code, detail);
  }
}
