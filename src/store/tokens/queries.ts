import type { LineType } from '../../phone/parse.js';
import type { Queryable } from '../db.js';
import type { EnvelopeRow, TokenMetadataRow } from './rows.js';

// Single-tenant queries of the use-cases that are not coalesced; each takes the transaction it runs in, so that
// the use-case commits it with its audit event (src/store/audit-log.ts).

const LIVE = '(expires_at IS NULL OR expires_at > now())';

export async function findMetadata(q: Queryable, tenant: string, tokenId: Buffer): Promise<TokenMetadataRow | null> {
  const result = await q.query<{ country: string | null; line_type: LineType; deterministic: boolean; created_at: Date; expires_at: Date | null }>(
    `SELECT country, line_type, deterministic, created_at, expires_at FROM tokens WHERE tenant_id = $1 AND token_id = $2 AND ${LIVE}`,
    [tenant, tokenId],
  );
  const row = result.rows[0];
  return row ? { tokenId, country: row.country, lineType: row.line_type, deterministic: row.deterministic, createdAt: row.created_at, expiresAt: row.expires_at } : null;
}

/**
 * A page of the tokens whose fingerprint matches, in token order after `after`: candidates only, since a
 * fingerprint is a column like any other and could have been moved; the caller opens each envelope to be sure.
 */
export async function findByFingerprint(
  q: Queryable,
  tenant: string,
  fingerprint: Buffer,
  page: { after: Buffer | null; limit: number; liveOnly: boolean },
): Promise<EnvelopeRow[]> {
  const result = await q.query<{ token_id: Buffer; key_version: number; envelope: Buffer }>(
    `SELECT token_id, key_version, envelope FROM tokens
     WHERE tenant_id = $1 AND fingerprint = $2 AND token_id > $3 ${page.liveOnly ? `AND ${LIVE}` : ''}
     ORDER BY token_id LIMIT $4`,
    [tenant, fingerprint, page.after ?? Buffer.alloc(0), page.limit],
  );
  return result.rows.map((row) => ({ tokenId: row.token_id, keyVersion: row.key_version, envelope: row.envelope, fingerprint }));
}

export async function deleteLiveToken(q: Queryable, tenant: string, tokenId: Buffer): Promise<boolean> {
  const result = await q.query(`DELETE FROM tokens WHERE tenant_id = $1 AND token_id = $2 AND ${LIVE}`, [tenant, tokenId]);
  return result.rowCount === 1;
}

/** Deletes these tokens, each only if it still has this fingerprint. */
export async function deleteTokens(q: Queryable, tenant: string, fingerprint: Buffer, tokenIds: Buffer[]): Promise<number> {
  if (tokenIds.length === 0) return 0;
  const result = await q.query('DELETE FROM tokens WHERE tenant_id = $1 AND fingerprint = $2 AND token_id = ANY($3::bytea[])', [tenant, fingerprint, tokenIds]);
  return result.rowCount;
}
