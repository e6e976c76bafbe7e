import type { ReadKeys } from '../crypto/keyring.js';
import { openNumber } from '../crypto/number-envelope.js';
import type { EnvelopeRow } from '../store/tokens/rows.js';

/** Each row with the number it holds: null when its envelope does not open (tampered, or its key destroyed). */
export async function openEach(keys: ReadKeys, tenant: string, rows: EnvelopeRow[]): Promise<Array<[EnvelopeRow, string | null]>> {
  const opened: Array<[EnvelopeRow, string | null]> = [];
  for (const row of rows) {
    const key = await keys.dataKey(row.keyVersion);
    let held: string | null = null;
    try {
      if (key) held = openNumber(key, { tenant, tokenId: row.tokenId, fingerprint: row.fingerprint }, row.envelope);
    } catch {
      held = null;
    }
    opened.push([row, held]);
  }
  return opened;
}

/**
 * Which of these rows truly hold `e164`, by opening each: a fingerprint only says where to look, and a row whose
 * fingerprint was moved (or whose envelope does not open) must never be answered or erased as this number's.
 */
export async function rowsHolding(keys: ReadKeys, tenant: string, rows: EnvelopeRow[], e164: string): Promise<{ holding: EnvelopeRow[]; others: number }> {
  const opened = await openEach(keys, tenant, rows);
  const holding = opened.filter(([, held]) => held === e164).map(([row]) => row);
  return { holding, others: rows.length - holding.length };
}
