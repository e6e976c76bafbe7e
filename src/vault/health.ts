import type { VaultDeps } from './deps.js';

/** Whether the database answers: the readiness probe's question. */
export async function storageAnswers(deps: VaultDeps): Promise<void> {
  await deps.db.query('SELECT 1');
}

/** The data keys' states and the most-used active key's share of its budget, across tenants, for /metrics. */
export async function keyStats(deps: VaultDeps): Promise<{ states: Map<string, number>; maxActiveEncryptions: number }> {
  return deps.keyAdmin.stats();
}
