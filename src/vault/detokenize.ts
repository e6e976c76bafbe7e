import { parseToken } from '../crypto/tokens.js';
import { maskPhone } from '../phone/mask.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';

export type Redaction = 'plain' | 'masked';

export type Detokenized =
  | { token: string; phone: string; country: string | null }
  | { token: string; masked: string; country: string | null }
  | { token: string; error: { code: 'not_found' | 'unreadable' } };

/**
 * Answers each token in order, once the read and its audit event are committed together: no number is opened
 * before. A token that does not exist, has expired, belongs to another tenant or whose key was destroyed is
 * `not_found`, indistinguishable from each other. Plaintext numbers are never cached.
 */
export async function detokenize(deps: VaultDeps, caller: Caller, tokens: string[], redaction: Redaction): Promise<Detokenized[]> {
  // Keyed by the token string, which is canonical: one id has exactly one spelling (src/crypto/tokens.ts).
  const ids = new Map<string, Buffer>();
  for (const token of tokens) {
    if (ids.has(token)) continue;
    const id = parseToken(token);
    if (id) ids.set(token, id);
  }
  const event = eventOf(caller, redaction === 'masked' ? 'detokenize_masked' : 'detokenize', tokens.length);
  const [rows, keys] = await Promise.all([deps.tokens.readSealed(caller.tenant, [...ids.values()], [event]), deps.keyring.forReading(caller.tenant)]);
  const found = new Map<string, Detokenized>();
  if (rows.length > 0 && keys) {
    // The rows hold the very id buffers asked for, so each finds its token string by identity.
    const tokenOf = new Map<Buffer, string>();
    for (const [token, id] of ids) tokenOf.set(id, token);
    const dataKeys = new Map<number, Buffer>();
    for (const version of new Set(rows.map((row) => row.keyVersion))) {
      const key = await keys.dataKey(version);
      if (key) dataKeys.set(version, key);
    }
    const opened = await deps.offload.openRows(caller.tenant, dataKeys, rows);
    rows.forEach((row, i) => {
      const token = tokenOf.get(row.tokenId)!;
      const e164 = opened[i];
      if (e164 === undefined) return; // its key was destroyed: as if it never existed
      if (e164 === null) {
        // A row that fails authentication was tampered with or corrupted: loud in the log, opaque to the caller.
        deps.logger.error({ tenant: caller.tenant, keyVersion: row.keyVersion }, 'token envelope failed to decrypt');
        found.set(token, { token, error: { code: 'unreadable' } });
        return;
      }
      found.set(token, redaction === 'plain' ? { token, phone: e164, country: row.country } : { token, masked: maskPhone(e164), country: row.country });
    });
  }
  return tokens.map((token) => found.get(token) ?? { token, error: { code: 'not_found' } });
}
