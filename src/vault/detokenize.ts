import { openNumber } from '../crypto/number-envelope.js';
import { formatToken, parseToken } from '../crypto/tokens.js';
import { safeErrorFields } from '../store/db.js';
import { maskPhone } from '../phone/mask.js';
import type { Caller, VaultDeps } from './vault.js';

export type Redaction = 'plain' | 'masked';

export type Detokenized =
  | { token: string; phone: string; country: string | null }
  | { token: string; masked: string; country: string | null }
  | { token: string; error: { code: 'not_found' | 'unreadable' } };

/**
 * Answers each token in order. A token that does not exist, has expired, belongs to another tenant or whose
 * key was destroyed is `not_found`, indistinguishable from each other. Plaintext numbers are never cached.
 */
export async function detokenize(deps: VaultDeps, caller: Caller, tokens: string[], redaction: Redaction): Promise<Detokenized[]> {
  // Keyed by the token string, which is canonical: one id has exactly one spelling (src/crypto/tokens.ts).
  const ids = new Map<string, Buffer>();
  for (const token of tokens) {
    if (ids.has(token)) continue;
    const id = parseToken(token);
    if (id) ids.set(token, id);
  }
  const keys = ids.size > 0 ? await deps.keyring.forReading(caller.tenant) : null;
  const rows = keys ? await deps.tokens.findSealed(caller.tenant, [...ids.values()]) : [];
  const found = new Map<string, Detokenized>();
  for (const row of rows) {
    const token = formatToken(row.tokenId);
    const key = await keys!.dataKey(row.keyVersion);
    if (!key) continue;
    let e164: string;
    try {
      e164 = openNumber(key, { tenant: caller.tenant, tokenId: row.tokenId }, row.envelope);
    } catch (error) {
      // A row that fails authentication was tampered with or corrupted: loud in the log, opaque to the caller.
      deps.logger.error({ tenant: caller.tenant, keyVersion: row.keyVersion, err: safeErrorFields(error) }, 'token envelope failed to decrypt');
      found.set(token, { token, error: { code: 'unreadable' } });
      continue;
    }
    found.set(token, redaction === 'plain' ? { token, phone: e164, country: row.country } : { token, masked: maskPhone(e164), country: row.country });
  }
  return tokens.map((token) => found.get(token) ?? { token, error: { code: 'not_found' } });
}
