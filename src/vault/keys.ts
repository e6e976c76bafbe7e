import type { KekProvider } from '../crypto/kek.js';
import { VaultError } from '../errors.js';
import { destroyVersion, listVersions, type DataKeyInfo } from '../store/keys-repository.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';

export interface KeyVersionReport extends Omit<DataKeyInfo, 'kekId'> {
  tokens: number;
  /** The KEK that wraps it, by id and provider (null for a KEK not configured here, or once destroyed). */
  kek: { id: string; provider: KekProvider | null } | null;
}

export interface KeysPage {
  keys: KeyVersionReport[];
  /** The version after which the next page starts, or null when this was the last. */
  next: number | null;
}

export async function rotateKey(deps: VaultDeps, caller: Caller): Promise<number> {
  return deps.keyring.rotate(caller.tenant, eventOf(caller, 'keys_rotate', 0), deps.rotationMinAgeMs);
}

/** A page of the tenant's key versions, with how many tokens each still protects. */
export async function listKeys(deps: VaultDeps, caller: Caller, page: { afterVersion: number; limit: number }): Promise<KeysPage> {
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    const versions = await listVersions(tx, caller.tenant, { afterVersion: page.afterVersion, limit: page.limit + 1 });
    const shown = versions.slice(0, page.limit);
    const counts = shown.length > 0 ? await deps.maintenance.countByVersion(caller.tenant, shown.map((v) => v.version)) : new Map<number, number>();
    return {
      value: { keys: shown.map(({ kekId, ...version }) => ({ ...version, tokens: counts.get(version.version) ?? 0, kek: kekId === null ? null : { id: kekId, provider: deps.keks.get(kekId)?.provider ?? null } })), next: versions.length > page.limit ? shown.at(-1)!.version : null },
      events: [eventOf(caller, 'keys_list', shown.length)],
    };
  });
}

const REFUSALS = {
  not_found: ['not_found', 'no such key version'],
  active: ['invalid_request', 'the active version cannot be destroyed; rotate first'],
  in_use: ['invalid_request', 'tokens still use this version; run `phonevault rewrap` first'],
  too_recent: ['invalid_request', 'this version was retired moments ago; retry in a minute'],
  already_destroyed: ['invalid_request', 'this version is already destroyed'],
} as const;

/** Destroys a retired, drained version, with its event: it can never encrypt or decrypt again. */
export async function destroyKeyVersion(deps: VaultDeps, caller: Caller, version: number): Promise<void> {
  try {
    await deps.auditLog.commit(caller.tenant, async (tx) => {
      const outcome = await destroyVersion(tx, caller.tenant, version);
      if (outcome !== 'destroyed') {
        const [code, detail] = REFUSALS[outcome];
        throw new VaultError(code, detail);
      }
      return { value: undefined, events: [eventOf(caller, 'keys_destroy', 1)] };
    });
  } finally {
    deps.keyring.forget(caller.tenant);
  }
}
