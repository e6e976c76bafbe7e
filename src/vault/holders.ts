import type { ReadKeys } from '../crypto/keyring.js';
import { openNumber } from '../crypto/number-envelope.js';
import type { EnvelopeRow } from '../store/tokens/rows.js';

/**
 * Which of these rows truly hold `e164`, by opening each: a fingerprint only says where to look, and a row whose
 * fingerprint was moved (or whose envelope does not open) must never be answered or erased as this number's.
 */
export async function rowsHolding(keys: ReadKeys, tenant: string, rows: EnvelopeRow[], e164: string): Promise<{ holding: EnvelopeRow[]; others: number }> {
  const holding: EnvelopeRow[] = [];
  let others = 0;
  for (const row of rows) {
    const key = await keys.dataKey(row.keyVersion);
    let held: string | null = null;
    try {
      if (key) held = openNumber(key, { tenant, tokenId: row.tokenId }, row.envelope);
    } catch {
      held = null;
    }
    if (held === e164) holding.push(row);
    else others++;
  }
  return { holding, others };
}
