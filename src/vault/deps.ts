import type { Logger } from 'pino';
import type { ChainLink } from '../audit/chain.js';
import { Keyring } from '../crypto/keyring.js';
import type { KekSet } from '../crypto/kek.js';
import { createApiKeysStore } from '../store/api-keys.js';
import { loadAuditKey, loadVaultKey } from '../store/audit-key.js';
import { createAuditLog } from '../store/audit-log.js';
import { isDistributed } from '../store/distribute.js';
import { createAuditReads } from '../store/audit-reads.js';
import { createIdempotencyStore } from '../store/idempotency.js';
import type { Db } from '../store/db.js';
import { createKeyAdministration, createKeysRepository } from '../store/keys-repository.js';
import { createTokensStore } from '../store/tokens/hot.js';
import { createTokenMaintenance } from '../store/tokens/maintenance.js';
import { inlineOffload, type Offload } from './offload.js';

export interface VaultOptions {
  db: Db;
  /** The key-encryption keys; the caller opened them and closes them. */
  keks: KekSet;
  keyMaxEncryptions: number;
  logger: Logger;
  offload?: Offload;
  /** A data key younger than this is not rotated again on request. */
  rotationMinAgeMs?: number;
  /** Told of every audit head committed, for the checkpoints written to the log. */
  onAuditAdvance?: (tenant: string, head: ChainLink, appended: number) => void;
}

/** Wires the vault's dependencies over one database: for the HTTP app and the maintenance commands alike. */
export async function openVault(options: VaultOptions) {
  const { keks } = options;
  const auditKey = await loadAuditKey(options.db, keks);
  const auditLog = createAuditLog(options.db, {
    key: auditKey,
    logger: options.logger,
    distributed: await isDistributed(options.db),
    ...(options.onAuditAdvance ? { onAdvance: options.onAuditAdvance } : {}),
  });
  return {
    db: options.db,
    keks,
    auditKey,
    auditLog,
    auditReads: createAuditReads(options.db),
    apiKeys: createApiKeysStore(options.db),
    apiKeyHashKey: await loadVaultKey(options.db, keks, 'api-key'),
    keyring: new Keyring(keks, createKeysRepository(options.db, auditLog), { maxEncryptions: options.keyMaxEncryptions }),
    tokens: createTokensStore(options.db, auditLog),
    idempotency: createIdempotencyStore(options.db),
    maintenance: createTokenMaintenance(options.db),
    keyAdmin: createKeyAdministration(options.db),
    offload: options.offload ?? inlineOffload,
    logger: options.logger,
    rotationMinAgeMs: options.rotationMinAgeMs ?? 0,
  };
}

export type VaultDeps = Awaited<ReturnType<typeof openVault>>;
