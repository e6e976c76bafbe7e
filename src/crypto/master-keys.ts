import { KEY_BYTES, open, seal } from './aead.js';
import { KekSet, type Kek } from './kek.js';

/** A key-encryption key given in the environment: its id and its 32 bytes. */
export interface MasterKey {
  id: string;
  key: Buffer;
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

/** A KEK held in process, from VAULT_MASTER_KEY (KEK_PROVIDER=env): AES-256-GCM in node:crypto. */
export function envKek(masterKey: MasterKey): Kek {
  return {
    id: masterKey.id,
    provider: 'env',
    wrap: async (plaintext, aad) => seal(masterKey.key, plaintext, aad),
    unwrap: async (blob, aad) => open(masterKey.key, blob, aad),
    close: async () => undefined,
  };
}

/** The KEKs of VAULT_MASTER_KEY alone (KEK_PROVIDER=env), the first active. */
export function envKekSet(masterKeys: MasterKey[]): KekSet {
  return new KekSet(masterKeys.map(envKek));
}
