import { encodeAad, KEY_BYTES, open, seal } from './aead.js';

/**
 * The key-encryption keys (KEKs). The first is active and wraps every new data key; the others only unwrap,
 * so that a master key can rotate while data keys wrapped by the old one are re-wrapped.
 */
export interface MasterKey {
  id: string;
  key: Buffer;
}

/** What a wrapped key is for; bound into its AAD. The audit and API-key keys are the vault's own, under the tenant ''. */
export type KeyPurpose = 'data' | 'fingerprint' | 'audit' | 'api-key';

export interface WrappedKey {
  kekId: string;
  blob: Buffer;
}

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;
export const DEFAULT_MASTER_KEY_ID = 'default';

/** Parses `base64` or `id:base64,id:base64`. Error messages never contain key material. */
export function parseMasterKeys(text: string): MasterKey[] {
  const entries = text.split(',').map((entry) => entry.trim());
  const keys: MasterKey[] = [];
  for (const [index, entry] of entries.entries()) {
    const colon = entry.indexOf(':');
    const id = colon === -1 ? DEFAULT_MASTER_KEY_ID : entry.slice(0, colon);
    const encoded = colon === -1 ? entry : entry.slice(colon + 1);
    if (colon === -1 && entries.length > 1) {
      throw new Error(`entry ${index + 1} has no id; with several master keys write id:base64,id:base64`);
    }
    if (!KEY_ID.test(id)) throw new Error(`entry ${index + 1} has an invalid id (1-32 of A-Z a-z 0-9 _ -)`);
    const key = BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : Buffer.alloc(0);
    if (key.length !== KEY_BYTES) throw new Error(`entry ${index + 1} (id ${id}) is not base64 of 32 bytes`);
    if (new Set(key).size < 16) throw new Error(`entry ${index + 1} (id ${id}) is too weak: use \`phonevault keygen\``);
    if (keys.some((other) => other.id === id)) throw new Error(`id ${id} appears twice`);
    keys.push({ id, key });
  }
  return keys;
}

function wrapAad(tenant: string, purpose: KeyPurpose, version: number): Buffer {
  return encodeAad('phonevault:key:v1', [tenant, purpose, version]);
}

export class MasterKeySet {
  readonly #keys: Map<string, Buffer>;
  readonly activeId: string;

  constructor(keys: MasterKey[]) {
    const first = keys[0];
    if (!first) throw new Error('at least one master key is required');
    this.#keys = new Map(keys.map((k) => [k.id, k.key]));
    this.activeId = first.id;
  }

  wrap(tenant: string, purpose: KeyPurpose, version: number, raw: Buffer): WrappedKey {
    const kek = this.#keys.get(this.activeId)!;
    return { kekId: this.activeId, blob: seal(kek, raw, wrapAad(tenant, purpose, version)) };
  }

  unwrap(tenant: string, purpose: KeyPurpose, version: number, wrapped: WrappedKey): Buffer {
    const kek = this.#keys.get(wrapped.kekId);
    if (!kek) throw new Error(`data key is wrapped by master key "${wrapped.kekId}", which is not configured`);
    return open(kek, wrapped.blob, wrapAad(tenant, purpose, version));
  }
}
