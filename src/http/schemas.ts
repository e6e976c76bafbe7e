import { z } from 'zod';
import { TOKEN_PATTERN } from '../crypto/tokens.js';
import { LINE_TYPES, MAX_PHONE_INPUT } from '../phone/parse.js';
import { isSafeText } from '../text.js';

/** Request and response shapes; unknown fields are refused on the way in and dropped on the way out. */

/** Text from a request: bounded, and never a control character, a line separator or a lone surrogate. */
export const safeText = (max: number) => z.string().min(1).max(max).refine(isSafeText, { message: 'holds characters the vault does not accept' });

export const phoneField = safeText(MAX_PHONE_INPUT).describe('A phone number in any common format');
export const countryField = z
  .string()
  .regex(/^[A-Za-z]{2}$/)
  .describe('ISO 3166 alpha-2 region used for numbers written without their country code');
export const tokenField = z.string().regex(TOKEN_PATTERN).describe('An opaque vault token');
const TEN_YEARS = 10 * 365 * 24 * 3600;
export const ttlField = z.int().min(1).max(TEN_YEARS).describe('Seconds until the token expires');
export const lineTypeField = z.enum(LINE_TYPES);
export const itemErrorSchema = z.object({ code: z.string(), detail: z.string() });

export const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.int(),
  code: z.string(),
  detail: z.string(),
  instance: z.string(),
});

/** The error answers every authenticated route can give, for the OpenAPI description. */
export const problemResponses = {
  400: problemSchema.describe('Invalid request, JSON, phone number or country'),
  401: problemSchema.describe('Missing or invalid bearer token'),
  403: problemSchema.describe('The token lacks the scope this call needs'),
  429: problemSchema.describe('Rate limit or item budget reached; see retry-after'),
  503: problemSchema.describe('Storage, throttling store or issuer keys unreachable; see retry-after'),
};

export const bearerSecurity = [{ bearer: [] }];
