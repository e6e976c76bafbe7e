import { metadata } from './libphonenumber.js';

// ITU calling codes form a prefix code, so the first 1–3 digits that name a known code are the code.
const { country_calling_codes: geographic, nonGeographic } = metadata as unknown as {
  country_calling_codes: Record<string, unknown>;
  nonGeographic: Record<string, unknown>;
};
const callingCodes = new Set([...Object.keys(geographic), ...Object.keys(nonGeographic)]);

export function callingCodeOf(e164: string): string {
  for (let length = 1; length <= 3; length++) {
    const candidate = e164.slice(1, 1 + length);
    if (callingCodes.has(candidate)) return candidate;
  }
  throw new Error('not an E.164 number with a known calling code');
}

/**
 * `+` and the calling code stay, and the last 4 digits of the national number — 2 when it is under 8 digits, 1
 * when it has 5 or fewer, so that a mask never shows most of a short number; the rest is `*`.
 */
export function maskPhone(e164: string): string {
  const callingCode = callingCodeOf(e164);
  const national = e164.slice(1 + callingCode.length);
  const keep = national.length <= 5 ? 1 : national.length < 8 ? 2 : 4;
  return `+${callingCode}${'*'.repeat(national.length - keep)}${national.slice(-keep)}`;
}
