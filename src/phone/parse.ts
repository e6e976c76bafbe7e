import type { CountryCode } from 'libphonenumber-js/max';
import { VaultError } from '../errors.js';
import { isSupportedCountry, parseStrict } from './libphonenumber.js';

export type LineType =
  | 'fixed_line'
  | 'mobile'
  | 'fixed_line_or_mobile'
  | 'toll_free'
  | 'premium_rate'
  | 'shared_cost'
  | 'voip'
  | 'personal_number'
  | 'pager'
  | 'uan'
  | 'voicemail'
  | 'unknown';

export interface ParsedPhone {
  e164: string;
  /** ISO 3166 alpha-2 region, or null for non-geographic numbers (+800, +870, …). */
  country: string | null;
  lineType: LineType;
}

/** Longer than any human-formatted number; libphonenumber is never handed more. */
export const MAX_PHONE_INPUT = 64;

export function parseCountry(country: string | undefined): CountryCode | undefined {
  if (country === undefined) return undefined;
  const upper = country.toUpperCase();
  if (!isSupportedCountry(upper)) throw new VaultError('invalid_country', 'country must be an ISO 3166 alpha-2 region code');
  return upper;
}

/**
 * Accepts a number in any common human format (international, or national with a default country); only a
 * *valid* number per libphonenumber's full metadata passes. Error details never repeat the input.
 */
export function parsePhone(input: string, defaultCountry?: string): ParsedPhone {
  const region = parseCountry(defaultCountry);
  if (input.length > MAX_PHONE_INPUT) throw new VaultError('invalid_phone', 'not a valid phone number');
  let phone;
  try {
    phone = parseStrict(input, region);
  } catch {
    phone = undefined;
  }
  // With the full metadata a number is valid exactly when it matches a number type, so one match answers both
  // questions; isValid() stays the authority for the rare region without type patterns.
  const type = phone?.getType();
  if (!phone || (type === undefined && !phone.isValid())) throw new VaultError('invalid_phone', 'not a valid phone number');
  // An extension has no place in E.164: refusing it is better than silently storing a different number.
  if (phone.ext) throw new VaultError('invalid_phone', 'extensions are not supported');
  return {
    e164: phone.number,
    country: phone.country ?? null,
    lineType: (type?.toLowerCase() as LineType | undefined) ?? 'unknown',
  };
}
