import { fingerprintNumber } from '../crypto/fingerprint.js';
import { formatToken, parseToken } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import { parsePhone, type LineType } from '../phone/parse.js';
import type { Caller, VaultDeps } from './vault.js';
import type { PhoneInput } from './tokenize.js';

export interface TokenMetadata {
  token: string;
  country: string | null;
  lineType: LineType;
  deterministic: boolean;
  createdAt: Date;
  expiresAt: Date | null;
}

/** The fingerprint of a number in the tenant, or null when the tenant has no keys (so no tokens) yet. */
export async function fingerprintOf(deps: VaultDeps, caller: Caller, input: PhoneInput): Promise<Buffer | null> {
  const { e164 } = parsePhone(input.phone, input.country);
  const keys = await deps.keyring.forReading(caller.tenant);
  return keys ? fingerprintNumber(keys.fingerprintKey, e164) : null;
}

/** The live tokens of a number in the caller's tenant; no number is ever returned. */
export async function lookup(deps: VaultDeps, caller: Caller, input: PhoneInput): Promise<string[]> {
  const fingerprint = await fingerprintOf(deps, caller, input);
  if (!fingerprint) return [];
  return (await deps.maintenance.findLiveByFingerprint(caller.tenant, fingerprint)).map(formatToken);
}

/** A token's metadata, never its number. Missing, expired and foreign tokens are the same not_found. */
export async function tokenMetadata(deps: VaultDeps, caller: Caller, token: string): Promise<TokenMetadata> {
  const id = parseToken(token);
  const row = id ? await deps.tokens.findLiveOne(caller.tenant, id) : null;
  if (!row) throw new VaultError('not_found', 'no such token');
  return {
    token: formatToken(row.tokenId),
    country: row.country,
    lineType: row.lineType as LineType,
    deterministic: row.deterministic,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
  };
}
