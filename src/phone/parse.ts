import type { CountryCode } from 'libphonenumber-js/max';
import { VaultError } from '../errors.js';
import { isSupportedCountry, parseStrict } from './libphonenumber.js';

/** Line types as the vault names them (libphonenumber's, lower-cased); the API, the store and the metrics share this list. */
export const LINE_TYPES = [
  'fixed_line',
  'mobile',
  'fixed_line_or_mobile',
  'toll_free',
  'premium_rate',
  'shared_cost',
  'voip',
  'personal_number',
  'pager',
  'uan',
  'voicemail',
  'unknown',
] as const;
export type LineType = (typeof LINE_TYPES)[number];

export interface ParsedPhone {
  e164: string;
  /** ISO 3166 alpha-2 region, or null for non-geographic numbers (+800, +870, …). */
  country: string | null;
  lineType: LineType;
}

/** Longer than any human-formatted number; libphonenumber is never handed more. */
export const MAX_PHONE_INPUT = 64;

const DECIMAL_DIGIT = /\p{Nd}/u;
const NON_ASCII = /[^\x00-\x7f]/;

/** A decimal digit's value: Unicode lays out every script's digits as runs of ten, from zero. */
function digitValue(codePoint: number): number {
  let zero = codePoint;
  while (DECIMAL_DIGIT.test(String.fromCodePoint(zero - 1))) zero--;
  return (codePoint - zero) % 10;
}

/**
 * Every decimal digit of any script (Arabic-Indic, Devanagari, fullwidth, …) as its ASCII digit, and the
 * fullwidth plus sign as `+`, so that one number is one number whatever script it came in; libphonenumber alone
 * accepts some scripts and not others.
 */
export function asciiDigits(input: string): string {
  if (!NON_ASCII.test(input)) return input;
  return input.replace(/\p{Nd}|\uff0b/gu, (sign) => (sign === '\uff0b' ? '+' : String(digitValue(sign.codePointAt(0)!))));
}

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
    phone = parseStrict(asciiDigits(input), region);
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
