import type { AuditEvent } from '../audit/chain.js';
import type { WrappedKey } from './kek.js';

export interface TenantKeysRecord {
  fingerprint: WrappedKey;
  active: { version: number; wrapped: WrappedKey };
  /** Of the versions asked about, those that still have key material. */
  kept: Array<{ version: number; wrapped: WrappedKey }>;
}

export type RotateOutcome = 'rotated' | 'not_active' | 'too_soon';

/** What the keyring needs from storage; src/store/keys-repository.ts implements it over SQL. */
export interface KeyStore {
  /** The tenant's fingerprint key, active version, and which of `versions` still have key material. */
  loadTenant(tenant: string, versions: number[]): Promise<TenantKeysRecord | null>;
  /** One version's key material, or null when it was destroyed or never existed. */
  loadDataKey(tenant: string, version: number): Promise<WrappedKey | null>;
  /**
   * Creates the tenant's fingerprint key and data key version 1 with `event` committed alongside, unless another
   * writer already did (false).
   */
  createTenantKeys(tenant: string, fingerprint: WrappedKey, firstDataKey: WrappedKey, event: AuditEvent): Promise<boolean>;
  /** Adds `count` to the version's encryption counter if it is active and stays within `budget`. */
  reserveEncryptions(tenant: string, version: number, count: number, budget: number): Promise<boolean>;
  /**
   * Retires `fromVersion` and activates `fromVersion + 1` with `event` committed alongside, unless `fromVersion`
   * is no longer active, or is younger than `minAgeMs`.
   */
  rotateDataKey(tenant: string, fromVersion: number, next: WrappedKey, options: { event: AuditEvent; minAgeMs: number }): Promise<RotateOutcome>;
}
