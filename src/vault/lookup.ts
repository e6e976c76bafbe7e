import { fingerprintNumber } from '../crypto/fingerprint.js';
import { formatToken, parseToken, TOKEN_ID_BYTES } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import { parsePhone, type LineType } from '../phone/parse.js';
import { findByFingerprint, findMetadata } from '../store/tokens/queries.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';
import { rowsHolding } from './holders.js';
import type { PhoneInput } from './tokenize.js';

export interface TokenMetadata {
  token: string;
  country: string | null;
  lineType: LineType;
  deterministic: boolean;
  createdAt: Date;
  expiresAt: Date | null;
}

export interface LookupPage {
  tokens: string[];
  /** Where the next page starts, or null when this was the last. */
  next: string | null;
}

/** A lookup cursor is the position (a token id) after which the next page starts, opaque to callers. */
const CURSOR = /^[A-Za-z0-9_-]{21}[AQgw]$/;

export function parseCursor(cursor: string | undefined): Buffer | null {
  if (cursor === undefined) return null;
  // Any id's base64url (an opaque or a phone-shaped token's): the pattern admits only the canonical spelling.
  const id = CURSOR.test(cursor) ? Buffer.from(cursor, 'base64url') : null;
  if (id?.length !== TOKEN_ID_BYTES) throw new VaultError('invalid_request', 'cursor: not a cursor this vault gave');
  return id;
}

/** A page of the live tokens of a number in the caller's tenant; no number is ever returned. */
export async function lookup(deps: VaultDeps, caller: Caller, input: PhoneInput, page: { limit: number; cursor?: string | undefined }): Promise<LookupPage> {
  const { e164 } = parsePhone(input.phone, input.country);
  const after = parseCursor(page.cursor);
  const keys = await deps.keyring.forReading(caller.tenant);
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    if (!keys) return { value: { tokens: [], next: null }, events: [eventOf(caller, 'lookup', 0)] };
    const candidates = await findByFingerprint(tx, caller.tenant, fingerprintNumber(keys.fingerprintKey, e164), { after, limit: page.limit + 1, liveOnly: true });
    const examined = candidates.slice(0, page.limit);
    const { holding, others } = await rowsHolding(keys, caller.tenant, examined, e164);
    if (others > 0) deps.logger.warn({ tenant: caller.tenant, rows: others }, 'rows whose fingerprint matched do not hold the number');
    const next = candidates.length > page.limit ? examined.at(-1)!.tokenId.toString('base64url') : null;
    return { value: { tokens: holding.map((row) => formatToken(row.tokenId)), next }, events: [eventOf(caller, 'lookup', holding.length)] };
  });
}

/** A token's metadata, never its number. Missing, expired and foreign tokens are the same not_found. */
export async function tokenMetadata(deps: VaultDeps, caller: Caller, token: string): Promise<TokenMetadata> {
  const id = parseToken(token);
  if (!id) throw new VaultError('not_found', 'no such token');
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    const row = await findMetadata(tx, caller.tenant, id);
    if (!row) throw new VaultError('not_found', 'no such token');
    return {
      value: { token: formatToken(row.tokenId), country: row.country, lineType: row.lineType, deterministic: row.deterministic, createdAt: row.createdAt, expiresAt: row.expiresAt },
      events: [eventOf(caller, 'metadata', 1)],
    };
  });
}
