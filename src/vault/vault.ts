import type { Logger } from 'pino';
import type { Keyring } from '../crypto/keyring.js';
import type { TokensRepository } from '../store/tokens-repository.js';
import { detokenize } from './detokenize.js';
import { tokenize, tokenizeBatch } from './tokenize.js';

/** Who is calling: both come only from a verified JWT. */
export interface Caller {
  tenant: string;
  client: string;
}

export interface VaultDeps {
  tokens: TokensRepository;
  keyring: Keyring;
  logger: Logger;
}

/** The vault's use-cases, bound to their dependencies; they take plain values and know nothing of HTTP. */
export function createVault(deps: VaultDeps) {
  return {
    tokenize: tokenize.bind(null, deps),
    tokenizeBatch: tokenizeBatch.bind(null, deps),
    detokenize: detokenize.bind(null, deps),
  };
}

export type Vault = ReturnType<typeof createVault>;
