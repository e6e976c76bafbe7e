import type { Logger } from 'pino';
import { Keyring } from '../crypto/keyring.js';
import { MasterKeySet, type MasterKey } from '../crypto/master-keys.js';
import { createAuditRepository } from '../store/audit-repository.js';
import type { Db } from '../store/db.js';
import { createKeyAdministration, createKeysRepository } from '../store/keys-repository.js';
import { createTokenMaintenance, createTokensRepository } from '../store/tokens-repository.js';
import { inlineOffload, type Offload } from './offload.js';
import type { VaultDeps } from './vault.js';

/** Wires the vault's dependencies over one database: for the HTTP app and the maintenance commands alike. */
export function createVaultDeps(options: { db: Db; masterKeys: MasterKey[]; keyMaxEncryptions: number; logger: Logger; offload?: Offload }) {
  const masterKeySet = new MasterKeySet(options.masterKeys);
  const audit = createAuditRepository(options.db);
  return {
    masterKeySet,
    keyring: new Keyring(masterKeySet, createKeysRepository(options.db), { maxEncryptions: options.keyMaxEncryptions }),
    tokens: createTokensRepository(options.db, { audit }),
    maintenance: createTokenMaintenance(options.db),
    keyAdmin: createKeyAdministration(options.db),
    audit,
    offload: options.offload ?? inlineOffload,
    logger: options.logger,
  } satisfies VaultDeps & Record<string, unknown>;
}
