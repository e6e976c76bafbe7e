import { createApiKey, listApiKeys, revokeApiKey } from './api-keys.js';
import { listKeys, destroyKeyVersion, rotateKey } from './keys.js';
import { detokenize } from './detokenize.js';
import { eraseNumber, eraseNumberOnce, eraseToken } from './erase.js';
import { lookup, tokenMetadata } from './lookup.js';
import { readAudit, recordEvents } from './audit.js';
import { tokenize, tokenizeBatch, tokenizeBatchOnce, tokenizeOnce } from './tokenize.js';
import type { VaultDeps } from './deps.js';

/**
 * The vault's use-cases, bound to their dependencies. They take plain values (a Caller, inputs) and know nothing
 * of HTTP; each one that answers or changes data commits its audit event with its own reads and writes.
 */
export function createVault(deps: VaultDeps) {
  return {
    tokenize: tokenize.bind(null, deps),
    tokenizeBatch: tokenizeBatch.bind(null, deps),
    tokenizeOnce: tokenizeOnce.bind(null, deps),
    tokenizeBatchOnce: tokenizeBatchOnce.bind(null, deps),
    detokenize: detokenize.bind(null, deps),
    lookup: lookup.bind(null, deps),
    tokenMetadata: tokenMetadata.bind(null, deps),
    eraseToken: eraseToken.bind(null, deps),
    eraseNumber: eraseNumber.bind(null, deps),
    eraseNumberOnce: eraseNumberOnce.bind(null, deps),
    rotateKey: rotateKey.bind(null, deps),
    listKeys: listKeys.bind(null, deps),
    destroyKeyVersion: destroyKeyVersion.bind(null, deps),
    createApiKey: createApiKey.bind(null, deps),
    listApiKeys: listApiKeys.bind(null, deps),
    revokeApiKey: revokeApiKey.bind(null, deps),
    readAudit: readAudit.bind(null, deps),
    recordEvents: recordEvents.bind(null, deps),
  };
}

export type Vault = ReturnType<typeof createVault>;
