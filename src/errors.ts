/**
 * Every failure a caller can see has a stable code. The HTTP layer maps codes to statuses in one place
 * (src/http/problem.ts); the layers below only ever throw a VaultError or let an internal error escape.
 */
export type ErrorCode =
  | 'invalid_request'
  | 'invalid_json'
  | 'invalid_phone'
  | 'invalid_country'
  | 'invalid_purpose'
  | 'unauthorized'
  | 'insufficient_scope'
  | 'not_found'
  | 'uri_too_long'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'unavailable'
  | 'internal_error';

export class VaultError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;

  constructor(code: ErrorCode, detail: string) {
    super(`${code}: ${detail}`);
    this.name = 'VaultError';
    this.code = code;
    this.detail = detail;
  }
}

export function isVaultError(value: unknown): value is VaultError {
  return value instanceof VaultError;
}
