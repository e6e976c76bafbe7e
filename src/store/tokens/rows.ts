import type { LineType } from '../../phone/parse.js';

/** A row of `tokens`, as the vault sees it. Every narrower shape below is a Pick of this one. */
export interface TokenRow {
  tokenId: Buffer;
  keyVersion: number;
  envelope: Buffer;
  fingerprint: Buffer;
  deterministic: boolean;
  country: string | null;
  lineType: LineType;
  createdAt: Date;
  expiresAt: Date | null;
}

/** What an insert writes (the store sets the creation time). */
export type NewToken = Omit<TokenRow, 'createdAt'>;

/** What detokenize needs of a row, and no more (no dates to parse on the hottest read). */
export type SealedToken = Pick<TokenRow, 'tokenId' | 'keyVersion' | 'envelope' | 'fingerprint' | 'country'>;

/** A token's metadata, never its envelope. */
export type TokenMetadataRow = Pick<TokenRow, 'tokenId' | 'country' | 'lineType' | 'deterministic' | 'createdAt' | 'expiresAt'>;

/** What opening a row needs: its envelope and what the envelope is bound to. */
export type EnvelopeRow = Pick<TokenRow, 'tokenId' | 'keyVersion' | 'envelope' | 'fingerprint'>;
