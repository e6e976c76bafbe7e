import { encodeAad } from './aead.js';

/** What a wrapped key is for; bound into its AAD. The audit and API-key keys are the vault's own, under the tenant ''. */
export type KeyPurpose = 'data' | 'fingerprint' | 'audit' | 'api-key';

export interface WrappedKey {
  kekId: string;
  blob: Buffer;
}

export type KekProvider = 'env' | 'pkcs11' | 'awskms';

/** The setting an operator fixes when a KEK of this provider is not the one the database was written with. */
export const KEK_SETTING: Record<KekProvider, string> = { env: 'VAULT_MASTER_KEY', pkcs11: 'PKCS11_KEY_LABEL', awskms: 'AWS_KMS_KEY_ID' };

/**
 * A key-encryption key: wraps and unwraps data keys, wherever it lives (the environment, an HSM, a KMS). A provider
 * that cannot be reached throws KekUnavailableError; a blob the key does not open throws any other error.
 */
export interface Kek {
  /** Stored beside every key it wraps; what an operator configures and sees. */
  readonly id: string;
  readonly provider: KekProvider;
  wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer>;
  unwrap(blob: Buffer, aad: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

/** The provider could not be reached or failed: the request was fine, the key is away. Carries no material. */
export class KekUnavailableError extends Error {
  readonly kekId: string;
  readonly reason: string;

  constructor(kekId: string, reason: string) {
    super(`the key-encryption key "${kekId}" is unavailable`);
    this.name = 'KekUnavailableError';
    this.kekId = kekId;
    this.reason = reason;
  }
}

/** A provider cannot be set up (start-up stops): the message names the setting to fix and never carries a secret. */
export class KekSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KekSetupError';
  }
}

/** Whether an unwrap succeeds; a provider that cannot be reached throws rather than answer no. */
export async function unwraps(unwrap: () => Promise<unknown>): Promise<boolean> {
  try {
    await unwrap();
    return true;
  } catch (error) {
    if (error instanceof KekUnavailableError) throw error;
    return false;
  }
}

function wrapAad(tenant: string, purpose: KeyPurpose, version: number): Buffer {
  return encodeAad('phonevault:key:v1', [tenant, purpose, version]);
}

export interface KekHealth {
  id: string;
  provider: KekProvider;
  active: boolean;
  /** The last call's outcome: false after a failure until a call succeeds. */
  up: boolean;
  failures: number;
}

/**
 * The configured KEKs. The first is active and wraps every new data key; the others only unwrap, so that keys
 * can move from one KEK (or provider) to another while both are configured.
 */
export class KekSet {
  readonly #keks: Map<string, Kek>;
  readonly #health: Map<string, KekHealth>;
  readonly activeId: string;

  constructor(keks: Kek[]) {
    const first = keks[0];
    if (!first) throw new Error('at least one key-encryption key is required');
    this.#keks = new Map();
    for (const kek of keks) {
      if (this.#keks.has(kek.id)) throw new Error(`the key-encryption key id "${kek.id}" is configured twice`);
      this.#keks.set(kek.id, kek);
    }
    this.activeId = first.id;
    this.#health = new Map(keks.map((kek) => [kek.id, { id: kek.id, provider: kek.provider, active: kek === first, up: true, failures: 0 }]));
  }

  get ids(): string[] {
    return [...this.#keks.keys()];
  }

  get(id: string): Kek | undefined {
    return this.#keks.get(id);
  }

  health(): KekHealth[] {
    return [...this.#health.values()].map((entry) => ({ ...entry }));
  }

  async wrap(tenant: string, purpose: KeyPurpose, version: number, raw: Buffer): Promise<WrappedKey> {
    const kek = this.#keks.get(this.activeId)!;
    return { kekId: kek.id, blob: await this.#watch(kek, () => kek.wrap(raw, wrapAad(tenant, purpose, version))) };
  }

  async unwrap(tenant: string, purpose: KeyPurpose, version: number, wrapped: WrappedKey): Promise<Buffer> {
    const kek = this.#keks.get(wrapped.kekId);
    if (!kek) throw new Error(`data key is wrapped by master key "${wrapped.kekId}", which is not configured`);
    return this.#watch(kek, () => kek.unwrap(wrapped.blob, wrapAad(tenant, purpose, version)));
  }

  async close(): Promise<void> {
    for (const kek of this.#keks.values()) await kek.close();
  }

  async #watch<T>(kek: Kek, call: () => Promise<T>): Promise<T> {
    const health = this.#health.get(kek.id)!;
    try {
      const value = await call();
      health.up = true;
      return value;
    } catch (error) {
      if (error instanceof KekUnavailableError) {
        health.up = false;
        health.failures++;
      }
      throw error;
    }
  }
}
