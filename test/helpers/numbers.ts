/**
 * The numbers the tests send, each with the spellings a leak could take. The leak scan at the end of the run
 * looks for every spelling in every log line the suite produced.
 */
export const NUMBERS = {
  us: { e164: '+12015550123', national: '(201) 555-0123', digits: '2015550123', country: 'US' },
  us2: { e164: '+12015550124', national: '(201) 555-0124', digits: '2015550124', country: 'US' },
  gb: { e164: '+447400123456', national: '07400 123456', digits: '7400123456', country: 'GB' },
  de: { e164: '+4915123456789', national: '01512 3456789', digits: '15123456789', country: 'DE' },
  fr: { e164: '+33612345678', national: '06 12 34 56 78', digits: '612345678', country: 'FR' },
  invalid: { e164: '+12005550199', national: '(200) 555-0199', digits: '2005550199', country: 'US' },
} as const;

/** Spellings to search for: E.164, the digits alone, and the national form with its separators removed. */
export function spellingsOf(number: { e164: string; national: string; digits: string }): string[] {
  return [number.e164, number.e164.slice(1), number.digits, number.national, number.national.replace(/\D/g, '')];
}

export const ALL_SPELLINGS = Object.values(NUMBERS).flatMap(spellingsOf);

/** Any compact JWT: header and payload are base64url JSON objects. */
export const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/;

/** An API key, or a fragment long enough to be one's secret. */
export const API_KEY_PATTERN = /pvk_[0-9A-Za-z]{16,}/;

/** Anything shaped like an E.164 number, whichever test sent it. */
export const E164_PATTERN = /\+\d{7,15}/;

export function findLeaks(text: string): string[] {
  const leaks = ALL_SPELLINGS.filter((spelling) => text.includes(spelling));
  if (E164_PATTERN.test(text)) leaks.push('an E.164 number');
  if (JWT_PATTERN.test(text)) leaks.push('a JWT');
  if (API_KEY_PATTERN.test(text)) leaks.push('an API key');
  return leaks;
}
