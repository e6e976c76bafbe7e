import { isSafeText } from './text.js';

export const SCOPES = ['tokenize', 'detokenize', 'detokenize:masked', 'lookup', 'erase', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling, from a verified credential only: the data partition, the calling application, its scopes. */
export interface Identity {
  tenant: string;
  client: string;
  scopes: ReadonlySet<string>;
}

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CLIENT = /^[A-Za-z0-9][A-Za-z0-9._~:@|/+=-]{0,127}$/;
// A run of digits, with the dots and dashes numbers are written with, perhaps after a plus sign.
const DIGIT_RUN = /(\+?)([0-9](?:[0-9.-]*[0-9])?)/g;
const SEGMENT_EDGE = /[:@|/~_=]/;

/**
 * An identifier that is, or holds, a phone number: a plus sign before 7–15 digits anywhere, or 7–15 digits
 * (with dots or dashes) standing alone between separators. Such an identifier would put a number into every log
 * line and audit row of its caller, so it is refused. Digits inside a longer word (UUIDs, hex ids, `user-42`)
 * are left alone, and so are runs longer than any E.164 number.
 */
export function holdsPhoneNumber(identifier: string): boolean {
  for (const match of identifier.matchAll(DIGIT_RUN)) {
    const digits = match[2]!.replace(/\D/g, '').length;
    if (digits < 7 || digits > 15) continue;
    if (match[1] === '+') return true;
    const before = identifier[match.index - 1];
    const after = identifier[match.index + match[0].length];
    if ((before === undefined || SEGMENT_EDGE.test(before)) && (after === undefined || SEGMENT_EDGE.test(after))) return true;
  }
  return false;
}

const valid = (text: unknown, pattern: RegExp): text is string =>
  typeof text === 'string' && isSafeText(text) && pattern.test(text) && !holdsPhoneNumber(text);

/** A tenant id from a credential, as data: 1–64 of letters, digits, `.`, `_`, `-`, and never a phone number. */
export const isValidTenant = (text: unknown): text is string => valid(text, TENANT);

/** A client id (a JWT's `sub`, an API key's name): 1–128 characters of a URL-safe set, never a phone number. */
export const isValidClient = (text: unknown): text is string => valid(text, CLIENT);

const MAX_SCOPE_CLAIM = 1024;

/** The scopes a space-separated claim grants; null when the claim itself is not acceptable text. */
export function parseScopes(claim: unknown): Set<string> | null {
  if (claim === undefined) return new Set();
  if (typeof claim !== 'string' || claim.length > MAX_SCOPE_CLAIM || !isSafeText(claim)) return null;
  return new Set(claim.split(' ').filter(Boolean));
}
