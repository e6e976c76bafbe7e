import { randomBytes } from 'node:crypto';
import { KEY_BYTES } from './aead.js';
import type { MasterKeySet, WrappedKey } from './master-keys.js';

export type DataKeyState = 'active' | 'retired' | 'destroyed';

export interface DataKeyRecord {
  version: number;
  state: DataKeyState;
  wrapped: WrappedKey | null;
}

export interface TenantKeysRecord {
  fingerprint: WrappedKey;
  dataKeys: DataKeyRecord[];
}

/** What the keyring needs from storage; src/store/keys-repository.ts implements it over SQL. */
export interface KeyStore {
  loadTenantKeys(tenant: string): Promise<TenantKeysRecord | null>;
  /** Creates the tenant's fingerprint key and data key version 1 unless another writer already did. */
  createTenantKeys(tenant: string, fingerprint: WrappedKey, firstDataKey: WrappedKey): Promise<void>;
  /** Adds `count` to the version's encryption counter if it is active and stays within `budget`. */
  reserveEncryptions(tenant: string, version: number, count: number, budget: number): Promise<boolean>;
  /** Retires `fromVersion` and activates `fromVersion + 1`, unless `fromVersion` is no longer active. */
  rotateDataKey(tenant: string, fromVersion: number, next: WrappedKey): Promise<void>;
}

export interface KeyringOptions {
  /** Encryptions one data key may perform before the keyring rotates it (random-IV GCM allows 2^32). */
  maxEncryptions: number;
  /** A lease of encryptions is used for at most this long, so that a rotation elsewhere is seen quickly. */
  leaseMaxAgeMs?: number;
  /** Cached keys are re-read this often for reading, so that a destroyed version or tenant is dropped. */
  reloadAfterMs?: number;
  leaseMaxSize?: number;
}

export interface WriteKeys {
  version: number;
  key: Buffer;
  fingerprintKey: Buffer;
}

export interface ReadKeys {
  fingerprintKey: Buffer;
  /** The unwrapped data key of a version, or null when it was destroyed or never existed. */
  dataKey(version: number): Promise<Buffer | null>;
}

interface Lease {
  version: number;
  remaining: number;
  size: number;
  expiresAt: number;
}

interface TenantKeys {
  loadedAt: number;
  fingerprintKey: Buffer;
  activeVersion: number;
  dataKeys: Map<number, Buffer>;
  lease: Lease | null;
}

/**
 * Unwraps and caches each tenant's keys, creates them on the tenant's first write, and counts encryptions by
 * leasing blocks from the store's counter: the stored count is always an upper bound of what was used, so the
 * GCM budget holds across any number of instances without a write per encryption.
 */
export class Keyring {
  readonly #masterKeys: MasterKeySet;
  readonly #store: KeyStore;
  readonly #maxEncryptions: number;
  readonly #leaseMaxAgeMs: number;
  readonly #leaseMaxSize: number;
  readonly #reloadAfterMs: number;
  readonly #tenants = new Map<string, TenantKeys>();
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(masterKeys: MasterKeySet, store: KeyStore, options: KeyringOptions) {
    this.#masterKeys = masterKeys;
    this.#store = store;
    this.#maxEncryptions = options.maxEncryptions;
    this.#leaseMaxAgeMs = options.leaseMaxAgeMs ?? 5_000;
    this.#leaseMaxSize = Math.min(options.leaseMaxSize ?? 4_096, options.maxEncryptions);
    this.#reloadAfterMs = options.reloadAfterMs ?? 30_000;
  }

  /** Keys for `count` new encryptions; each call spends `count` of the active key's budget. */
  async forWriting(tenant: string, count: number): Promise<WriteKeys> {
    if (count > this.#maxEncryptions) throw new Error('more encryptions at once than one data key may perform');
    const fast = this.#takeFromLease(tenant, count);
    if (fast) return fast;
    return this.#withLock(tenant, async () => {
      for (let attempt = 0; attempt < 4; attempt++) {
        const leased = this.#takeFromLease(tenant, count);
        if (leased) return leased;
        const keys = this.#tenants.get(tenant) ?? (await this.#loadOrCreate(tenant));
        const size = Math.max(count, Math.min(this.#leaseMaxSize, (keys.lease?.size ?? 32) * 2));
        if (await this.#store.reserveEncryptions(tenant, keys.activeVersion, size, this.#maxEncryptions)) {
          keys.lease = { version: keys.activeVersion, remaining: size, size, expiresAt: Date.now() + this.#leaseMaxAgeMs };
          continue;
        }
        // The active version is spent or was rotated by another instance: reload, and rotate if still ours.
        const reloaded = await this.#load(tenant);
        if (reloaded && reloaded.activeVersion === keys.activeVersion) {
          await this.#rotate(tenant, keys.activeVersion);
          await this.#load(tenant);
        }
      }
      throw new Error('could not reserve encryptions for the active data key');
    });
  }

  async forReading(tenant: string): Promise<ReadKeys | null> {
    const cached = this.#tenants.get(tenant);
    const keys = cached && Date.now() - cached.loadedAt < this.#reloadAfterMs ? cached : await this.#withLock(tenant, () => this.#load(tenant));
    if (!keys) return null;
    return {
      fingerprintKey: keys.fingerprintKey,
      dataKey: async (version) => {
        const cached = this.#tenants.get(tenant)?.dataKeys.get(version);
        if (cached) return cached;
        // A version newer than our cache was created by another instance.
        const reloaded = await this.#withLock(tenant, () => this.#load(tenant));
        return reloaded?.dataKeys.get(version) ?? null;
      },
    };
  }

  /** Rotates the tenant's data key now; new writes use the new version at once. */
  async rotate(tenant: string): Promise<number> {
    return this.#withLock(tenant, async () => {
      const keys = await this.#loadOrCreate(tenant);
      await this.#rotate(tenant, keys.activeVersion);
      const reloaded = await this.#load(tenant);
      return reloaded!.activeVersion;
    });
  }

  /** Forgets cached keys, e.g. after a version was destroyed. */
  forget(tenant: string): void {
    this.#tenants.delete(tenant);
  }

  #takeFromLease(tenant: string, count: number): WriteKeys | null {
    const keys = this.#tenants.get(tenant);
    const lease = keys?.lease;
    if (!keys || !lease || lease.remaining < count || lease.expiresAt <= Date.now()) return null;
    lease.remaining -= count;
    return { version: lease.version, key: keys.dataKeys.get(lease.version)!, fingerprintKey: keys.fingerprintKey };
  }

  async #rotate(tenant: string, fromVersion: number): Promise<void> {
    const next = this.#masterKeys.wrap(tenant, 'data', fromVersion + 1, randomBytes(KEY_BYTES));
    await this.#store.rotateDataKey(tenant, fromVersion, next);
  }

  async #loadOrCreate(tenant: string): Promise<TenantKeys> {
    const loaded = await this.#load(tenant);
    if (loaded) return loaded;
    await this.#store.createTenantKeys(
      tenant,
      this.#masterKeys.wrap(tenant, 'fingerprint', 0, randomBytes(KEY_BYTES)),
      this.#masterKeys.wrap(tenant, 'data', 1, randomBytes(KEY_BYTES)),
    );
    const created = await this.#load(tenant);
    if (!created) throw new Error('tenant keys vanished right after creation');
    return created;
  }

  async #load(tenant: string): Promise<TenantKeys | null> {
    const record = await this.#store.loadTenantKeys(tenant);
    if (!record) {
      this.#tenants.delete(tenant);
      return null;
    }
    const dataKeys = new Map<number, Buffer>();
    let activeVersion = 0;
    for (const dataKey of record.dataKeys) {
      if (dataKey.state === 'destroyed' || !dataKey.wrapped) continue;
      dataKeys.set(dataKey.version, this.#masterKeys.unwrap(tenant, 'data', dataKey.version, dataKey.wrapped));
      if (dataKey.state === 'active') activeVersion = dataKey.version;
    }
    const previous = this.#tenants.get(tenant);
    const keys: TenantKeys = {
      loadedAt: Date.now(),
      fingerprintKey: this.#masterKeys.unwrap(tenant, 'fingerprint', 0, record.fingerprint),
      activeVersion,
      dataKeys,
      lease: previous?.lease && previous.lease.version === activeVersion ? previous.lease : null,
    };
    this.#tenants.set(tenant, keys);
    return keys;
  }

  async #withLock<T>(tenant: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(tenant) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.#locks.set(tenant, settled);
    try {
      return await run;
    } finally {
      if (this.#locks.get(tenant) === settled) this.#locks.delete(tenant);
    }
  }
}
