import type { Logger } from 'pino';
import type { AuditEvent } from '../audit/chain.js';
import type { Keyring } from '../crypto/keyring.js';
import type { KeyAdministration } from '../store/keys-repository.js';
import type { TokenMaintenance, TokensRepository } from '../store/tokens-repository.js';
import { detokenize } from './detokenize.js';
import { eraseNumber, eraseToken } from './erase.js';
import { destroyKeyVersion, listKeys, rotateKey } from './keys.js';
import { lookup, tokenMetadata } from './lookup.js';
import type { Offload } from './offload.js';
import { tokenize, tokenizeBatch } from './tokenize.js';

/**
 * A success audit event to commit in the same statement as the use-case's own read or write, and what to do
 * once it is; when the use-case never reaches its statement, it never calls `recorded`.
 */
export interface Audited {
  event: AuditEvent;
  recorded(): void;
}

/** Who is calling: both come only from a verified JWT. */
export interface Caller {
  tenant: string;
  client: string;
}

export interface VaultDeps {
  tokens: TokensRepository;
  maintenance: TokenMaintenance;
  keyAdmin: KeyAdministration;
  keyring: Keyring;
  offload: Offload;
  logger: Logger;
}

/** The vault's use-cases, bound to their dependencies; they take plain values and know nothing of HTTP. */
export function createVault(deps: VaultDeps) {
  return {
    tokenize: tokenize.bind(null, deps),
    tokenizeBatch: tokenizeBatch.bind(null, deps),
    detokenize: detokenize.bind(null, deps),
    lookup: lookup.bind(null, deps),
    tokenMetadata: tokenMetadata.bind(null, deps),
    eraseToken: eraseToken.bind(null, deps),
    eraseNumber: eraseNumber.bind(null, deps),
    rotateKey: rotateKey.bind(null, deps),
    listKeys: listKeys.bind(null, deps),
    destroyKeyVersion: destroyKeyVersion.bind(null, deps),
  };
}

export type Vault = ReturnType<typeof createVault>;
