import { randomBytes } from 'node:crypto';
import type { AuditEvent } from '../audit/chain.js';
import { VaultError } from '../errors.js';
import { KEY_BYTES } from './aead.js';
import type { KeyStore } from './key-store.js';
import type { KekSet, WrappedKey } from './kek.js';

export const DATA_KEY_STATES = ['active', 'retired', 'destroyed'] as const;
export type DataKeyState = (typeof DATA_KEY_STATES)[number];

export interface KeyringOptions {
  /** Encryptions one data key may perform before the keyring rotates it (random-IV GCM allows 2^32). */
  maxEncryptions: number;
  /** A lease of encryptions is used for at most this long, so that a rotation elsewhere is seen quickly. */
  leaseMaxAgeMs?: number;
  /** Cached keys are re-checked this often, so that a destroyed version or tenant is dropped. */
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
  fingerprintWrapped: Buffer;
  fingerprintKey: Buffer;
  activeVersion: number;
  /** Unwrapped versions, unwrapped when first needed and bounded (oldest first out). */
  dataKeys: Map<number, Buffer>;
  lease: Lease | null;
}

// Bounds on what is kept unwrapped: a tenant with thousands of versions costs one version's unwrap per read of it,
// never all of them, and however many tenants call, memory stays bounded.
const MAX_TENANTS = 4_096;
const MAX_VERSIONS_PER_TENANT = 32;

/** The event of a key operation the vault does on its own, for no caller: a tenant's first keys, a rotation. */
const vaultEvent = (tenant: string, action: string): AuditEvent => ({
  tenant,
  client: 'phonevault',
  action,
  items: 0,
  outcome: 'ok',
  requestId: null,
  purpose: null,
  occurredAt: new Date(),
});

/**
 * Unwraps and caches each tenant's keys, creates them on the tenant's first write, and counts encryptions by
 * leasing blocks from the store's counter: the stored count is always an upper bound of what was used, so the
 * GCM budget holds across any number of instances without a write per encryption.
 */
export class Keyring {
  readonly #keks: KekSet;
  readonly #store: KeyStore;
  readonly #maxEncryptions: number;
  readonly #leaseMaxAgeMs: number;
  readonly #leaseMaxSize: number;
  readonly #reloadAfterMs: number;
  readonly #tenants = new Map<string, TenantKeys>();
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(keks: KekSet, store: KeyStore, options: KeyringOptions) {
    this.#keks = keks;
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
        const keys = this.#fresh(tenant) ?? (await this.#loadOrCreate(tenant, vaultEvent(tenant, 'keys_create'))).keys;
        const size = Math.max(count, Math.min(this.#leaseMaxSize, (keys.lease?.size ?? 32) * 2));
        if (await this.#store.reserveEncryptions(tenant, keys.activeVersion, size, this.#maxEncryptions)) {
          keys.lease = { version: keys.activeVersion, remaining: size, size, expiresAt: Date.now() + this.#leaseMaxAgeMs };
          continue;
        }
        // The active version is spent or was rotated by another instance: reload, and rotate if still ours.
        const reloaded = await this.#load(tenant);
        if (reloaded && reloaded.activeVersion === keys.activeVersion) {
          await this.#store.rotateDataKey(tenant, keys.activeVersion, await this.#wrapDataKey(tenant, keys.activeVersion + 1), { event: vaultEvent(tenant, 'keys_rotate'), minAgeMs: 0 });
          await this.#load(tenant);
        }
      }
      throw new Error('could not reserve encryptions for the active data key');
    });
  }

  async forReading(tenant: string): Promise<ReadKeys | null> {
    const keys = this.#fresh(tenant) ?? (await this.#withLock(tenant, () => this.#load(tenant)));
    if (!keys) return null;
    return {
      fingerprintKey: keys.fingerprintKey,
      dataKey: async (version) => {
        const cached = this.#tenants.get(tenant)?.dataKeys.get(version);
        if (cached) return cached;
        return this.#withLock(tenant, () => this.#unwrapVersion(tenant, version));
      },
    };
  }

  /**
   * Rotates the tenant's data key now, committing `event` with it; new writes use the new version at once. A
   * version younger than `minAgeMs` is not rotated again (429): rotation is an operator's act, not a loop's. A
   * tenant without keys gets its first ones, as fresh as a rotation would make them, with `event`.
   */
  async rotate(tenant: string, event: AuditEvent, minAgeMs: number): Promise<number> {
    return this.#withLock(tenant, async () => {
      const { keys, created } = await this.#loadOrCreate(tenant, event);
      if (created) return keys.activeVersion;
      const outcome = await this.#store.rotateDataKey(tenant, keys.activeVersion, await this.#wrapDataKey(tenant, keys.activeVersion + 1), { event, minAgeMs });
      if (outcome === 'too_soon') throw new VaultError('rate_limited', 'the data key was rotated moments ago; rotate again later', { retryAfterS: minAgeMs / 1000 });
      const reloaded = await this.#load(tenant);
      return reloaded!.activeVersion;
    });
  }

  /** Forgets cached keys, e.g. after a version was destroyed. */
  forget(tenant: string): void {
    this.#tenants.delete(tenant);
  }

  #fresh(tenant: string): TenantKeys | null {
    const keys = this.#tenants.get(tenant);
    return keys && Date.now() - keys.loadedAt < this.#reloadAfterMs ? keys : null;
  }

  #takeFromLease(tenant: string, count: number): WriteKeys | null {
    const keys = this.#tenants.get(tenant);
    const lease = keys?.lease;
    const key = lease ? keys.dataKeys.get(lease.version) : undefined;
    if (!keys || !lease || !key || lease.remaining < count || lease.expiresAt <= Date.now()) return null;
    lease.remaining -= count;
    return { version: lease.version, key, fingerprintKey: keys.fingerprintKey };
  }

  #wrapDataKey(tenant: string, version: number): Promise<WrappedKey> {
    return this.#keks.wrap(tenant, 'data', version, randomBytes(KEY_BYTES));
  }

  /** The tenant's keys, created with `event` recorded if it has none: no key comes to be without its event. */
  async #loadOrCreate(tenant: string, event: AuditEvent): Promise<{ keys: TenantKeys; created: boolean }> {
    const loaded = await this.#load(tenant);
    if (loaded) return { keys: loaded, created: false };
    const created = await this.#store.createTenantKeys(tenant, await this.#keks.wrap(tenant, 'fingerprint', 0, randomBytes(KEY_BYTES)), await this.#wrapDataKey(tenant, 1), event);
    const keys = await this.#load(tenant);
    if (!keys) throw new Error('tenant keys vanished right after creation');
    return { keys, created };
  }

  /** Re-reads the tenant: its active version, and which cached versions still exist. Unwraps only what is new. */
  async #load(tenant: string): Promise<TenantKeys | null> {
    const previous = this.#tenants.get(tenant);
    const record = await this.#store.loadTenant(tenant, previous ? [...previous.dataKeys.keys()] : []);
    if (!record) {
      this.#tenants.delete(tenant);
      return null;
    }
    const dataKeys = new Map<number, Buffer>();
    for (const { version } of record.kept) {
      const key = previous?.dataKeys.get(version);
      if (key) dataKeys.set(version, key);
    }
    if (!dataKeys.has(record.active.version)) dataKeys.set(record.active.version, await this.#keks.unwrap(tenant, 'data', record.active.version, record.active.wrapped));
    const sameFingerprint = previous && previous.fingerprintWrapped.equals(record.fingerprint.blob);
    const keys: TenantKeys = {
      loadedAt: Date.now(),
      fingerprintWrapped: record.fingerprint.blob,
      fingerprintKey: sameFingerprint ? previous.fingerprintKey : await this.#keks.unwrap(tenant, 'fingerprint', 0, record.fingerprint),
      activeVersion: record.active.version,
      dataKeys,
      lease: previous?.lease && previous.lease.version === record.active.version ? previous.lease : null,
    };
    this.#tenants.delete(tenant);
    if (this.#tenants.size >= MAX_TENANTS) this.#tenants.delete(this.#tenants.keys().next().value!);
    this.#tenants.set(tenant, keys);
    return keys;
  }

  async #unwrapVersion(tenant: string, version: number): Promise<Buffer | null> {
    const keys = this.#tenants.get(tenant) ?? (await this.#load(tenant));
    if (!keys) return null;
    const cached = keys.dataKeys.get(version);
    if (cached) return cached;
    const wrapped = await this.#store.loadDataKey(tenant, version);
    if (!wrapped) return null;
    const key = await this.#keks.unwrap(tenant, 'data', version, wrapped);
    if (keys.dataKeys.size >= MAX_VERSIONS_PER_TENANT) {
      const oldest = [...keys.dataKeys.keys()].find((v) => v !== keys.activeVersion);
      if (oldest !== undefined) keys.dataKeys.delete(oldest);
    }
    keys.dataKeys.set(version, key);
    return key;
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
