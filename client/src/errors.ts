import type { components } from './schema.js';

type Schemas = components['schemas'];

/** Every code a problem answer of the vault can carry: the union of each operation's enum in openapi.yaml. */
export type ProblemCode = {
  [Name in keyof Schemas]: Schemas[Name] extends { type: string; title: string; instance: string; code: infer Code } ? Code : never;
}[keyof Schemas];

/** What went wrong on the way rather than in the vault: no answer in time, no connection, an answer not its own. */
export type TransportCode = 'timeout' | 'network_error' | 'unexpected_response';

export type ErrorCode = ProblemCode | TransportCode;

/**
 * The one error the client throws (an AbortSignal's own reason aside). `code` is what to branch on; `requestId`
 * is what the vault's operators need to find the call in its log and audit trail. Never holds what was sent.
 */
export class PhonevaultError extends Error {
  readonly code: ErrorCode;
  /** The HTTP status, or null when no answer came. */
  readonly status: number | null;
  readonly detail: string;
  readonly requestId: string | null;
  /** How long the vault asked to wait before trying again, in seconds, when it said. */
  readonly retryAfterS: number | null;
  /** Attempts made before giving up. */
  readonly attempts: number;

  constructor(fields: { code: ErrorCode; status: number | null; detail: string; requestId: string | null; retryAfterS?: number | null; attempts: number; cause?: unknown }) {
    super(`${fields.code}: ${fields.detail}${fields.requestId ? ` (request ${fields.requestId})` : ''}`, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'PhonevaultError';
    this.code = fields.code;
    this.status = fields.status;
    this.detail = fields.detail;
    this.requestId = fields.requestId;
    this.retryAfterS = fields.retryAfterS ?? null;
    this.attempts = fields.attempts;
  }
}

export const isPhonevaultError = (value: unknown): value is PhonevaultError => value instanceof PhonevaultError;
