import { VaultError } from '../errors.js';

/** The reasons a caller may give in `x-purpose` when `AUDIT_PURPOSES` is not set. */
export const DEFAULT_PURPOSES = ['support', 'billing', 'fraud', 'legal', 'data-subject-request', 'notifications', 'maintenance'] as const;

export const PURPOSE_NAME = /^[a-z][a-z0-9-]{0,31}$/;
// A ticket or case reference: short, URL-safe, and with too few digits to hold a phone number.
const REFERENCE = /^[A-Za-z0-9._#-]{1,16}$/;
const MAX_REFERENCE_DIGITS = 6;

const refused = () =>
  new VaultError('invalid_purpose', 'x-purpose must be one of the configured purposes, optionally followed by ":" and a short reference');

/**
 * The caller's stated reason (`x-purpose`), recorded in the audit trail: a name from the allow-list, optionally
 * `:` and a reference of at most 16 characters and 6 digits (e.g. `support:INC-4711`). Free text is refused
 * rather than cleaned, so that nothing a caller writes there can carry a number, in digits or in words.
 */
export function parsePurpose(header: string | string[] | undefined, allowed: ReadonlySet<string>): string | null {
  if (header === undefined) return null;
  if (typeof header !== 'string') throw refused();
  const colon = header.indexOf(':');
  const name = colon === -1 ? header : header.slice(0, colon);
  const reference = colon === -1 ? null : header.slice(colon + 1);
  if (!allowed.has(name)) throw refused();
  if (reference !== null && (!REFERENCE.test(reference) || reference.replace(/\D/g, '').length > MAX_REFERENCE_DIGITS)) throw refused();
  return header;
}
