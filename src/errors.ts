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
  | 'idempotency_in_flight'
  | 'idempotency_key_reused'
  | 'uri_too_long'
  | 'headers_too_large'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'expectation_failed'
  | 'rate_limited'
  | 'unavailable'
  | 'internal_error';

export class VaultError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;
  /** For a refusal that will pass: when to try again, in seconds (HTTP's retry-after). */
  readonly retryAfterS: number | undefined;

  constructor(code: ErrorCode, detail: string, options: { retryAfterS?: number } = {}) {
    super(`${code}: ${detail}`);
    this.name = 'VaultError';
    this.code = code;
    this.detail = detail;
    this.retryAfterS = options.retryAfterS;
  }
}

export function isVaultError(value: unknown): value is VaultError {
  return value instanceof VaultError;
}

/**
 * The database could not be reached, dropped the connection or did not answer in time: the request was not
 * wrong, the storage is away. The store classifies its own failures, so that no caller has to read a driver's
 * message text.
 */
export class StorageUnavailableError extends Error {
  readonly code: string | undefined;

  constructor(code: string | undefined) {
    super('storage unavailable');
    this.name = 'StorageUnavailableError';
    this.code = code;
  }
}

/**
 * The trail could not be written: its head could not be locked or seeded, or its events could not be inserted.
 * Whatever the work did was rolled back with them; the caller gets 503 and nothing else.
 */
export class AuditUnavailable extends Error {
  readonly reason: unknown;

  constructor(reason: unknown) {
    super('the audit trail cannot be written');
    this.name = 'AuditUnavailable';
    this.reason = reason;
  }
}
