import type { Logger } from 'pino';
import { Keyring } from '../crypto/keyring.js';
import { MasterKeySet, type MasterKey } from '../crypto/master-keys.js';
import { createAuditRepository } from '../store/audit-repository.js';
import { safeErrorFields, type Db } from '../store/db.js';
import { createKeyAdministration, createKeysRepository } from '../store/keys-repository.js';
import { createTokenMaintenance, createTokensRepository } from '../store/tokens-repository.js';
import { inlineOffload, type Offload } from './offload.js';
import type { VaultDeps } from './vault.js';

/** Wires the vault's dependencies over one database: for the HTTP app and the maintenance commands alike. */
export function createVaultDeps(options: { db: Db; masterKeys: MasterKey[]; keyMaxEncryptions: number; logger: Logger; offload?: Offload }) {
  const masterKeySet = new MasterKeySet(options.masterKeys);
  const audit = createAuditRepository(options.db);
  // Flushes whose events had to be appended on their own: a trail that keeps failing beside its reads is a fault
  // worth seeing (a metric, and a warning with the SQLSTATE only).
  let auditAppendedApart = 0;
  const onAuditApart = (error: unknown) => {
    auditAppendedApart++;
    options.logger.warn({ err: safeErrorFields(error) }, 'audit events appended apart: their statement failed');
  };
  return {
    masterKeySet,
    keyring: new Keyring(masterKeySet, createKeysRepository(options.db), { maxEncryptions: options.keyMaxEncryptions }),
    tokens: createTokensRepository(options.db, { audit, onAuditApart }),
    maintenance: createTokenMaintenance(options.db),
    keyAdmin: createKeyAdministration(options.db),
    audit,
    auditAppendedApart: (): number => auditAppendedApart,
    offload: options.offload ?? inlineOffload,
    logger: options.logger,
  } satisfies VaultDeps & Record<string, unknown>;
}
