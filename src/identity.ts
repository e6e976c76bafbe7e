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
// The shapes random ids come in (UUIDs; 24, 32, 40 or 64 hex digits: object ids, MD5, SHA-1, SHA-256), standing
// alone between non-alphanumerics: opaque, whatever digits fall in them. Any other hex-looking text is read for
// digits like the rest, so that `12015550123abcdef` or a UUID's tail glued to a number cannot hide one.
const OPAQUE_HEX = /(?<![A-Za-z0-9])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32}|[0-9a-f]{24})(?![A-Za-z0-9])/gi;
// Groups of digits joined by one character each that is not a letter: 415_555_0123, x:415:555:0123, +1-415-…
const DIGIT_GROUPS = /[0-9]+(?:[^A-Za-z0-9][0-9]+)*/g;

/**
 * An identifier that is, or holds, a phone number: 7–15 digits in consecutive groups joined by single
 * separators, wherever they stand (`user-4155550123`, `tel4155550123`, `415_555_0123`). Such an identifier would
 * put a number into every log line and audit row of its caller, so it is refused. Left alone: random ids of the
 * usual shapes (OPAQUE_HEX),
 * shorter runs (`team-42`, `v1.2.3`) and runs longer than any E.164 number (numeric subjects of 16+ digits).
 * Only numbers written in digits can be seen: one spelled out or encoded is beyond any check.
 */
export function holdsPhoneNumber(identifier: string): boolean {
  const visible = identifier.replace(OPAQUE_HEX, (id) => (/[a-f]/i.test(id) ? ' ' : id));
  for (const [run] of visible.matchAll(DIGIT_GROUPS)) {
    const groups = run.split(/[^0-9]/).map((group) => group.length);
    for (let first = 0; first < groups.length; first++) {
      let digits = 0;
      for (let last = first; last < groups.length && digits <= 15; last++) {
        digits += groups[last]!;
        if (digits >= 7 && digits <= 15) return true;
      }
    }
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
