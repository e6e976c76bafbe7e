import { z } from 'zod';
import { parseRateLimit, rateLimit, type RateLimit } from './values.js';

export type RateLimitClass = 'tokenize' | 'detokenize' | 'lookup' | 'admin';
export const RATE_LIMIT_CLASSES = ['tokenize', 'detokenize', 'lookup', 'admin'] as const satisfies readonly RateLimitClass[];

/** Per-client budgets that differ from the defaults, keyed by `tenant/sub`. */
export interface ClientLimits {
  classes: Partial<Record<RateLimitClass, RateLimit>>;
  detokenizeItems?: RateLimit;
}

export interface RateLimitsConfig extends Record<RateLimitClass, RateLimit> {
  unauthenticated: RateLimit;
  detokenizeItems: RateLimit;
  perClient: Record<string, ClientLimits>;
  /** Classes that keep serving (unthrottled) while the shared counter store is unreachable. */
  failOpen: RateLimitClass[];
}

export const DEFAULT_RATE_LIMITS = {
  tokenize: '12000/1m',
  detokenize: '12000/1m',
  lookup: '1200/1m',
  admin: '60/1m',
  unauthenticated: '60/1m',
  detokenizeItems: '200000/1h',
} as const;

const clientEntry = z.strictObject({
  tokenize: z.string().optional(),
  detokenize: z.string().optional(),
  lookup: z.string().optional(),
  admin: z.string().optional(),
  detokenizeItems: z.string().optional(),
});

/** The contents of RATE_LIMITS_FILE (read before parsing, src/config/env.ts). */
const perClient = z
  .instanceof(Buffer)
  .optional()
  .transform((contents, ctx): Record<string, ClientLimits> => {
    if (!contents) return {};
    let raw: unknown;
    try {
      raw = JSON.parse(contents.toString('utf8'));
    } catch {
      ctx.addIssue({ code: 'custom', message: 'is not JSON' });
      return {};
    }
    const parsed = z.record(z.string().regex(/^[^/]+\/.+$/), clientEntry).safeParse(raw);
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', message: 'must map "tenant/sub" to {tokenize?, detokenize?, lookup?, admin?, detokenizeItems?}' });
      return {};
    }
    const out: Record<string, ClientLimits> = {};
    for (const [client, limits] of Object.entries(parsed.data)) {
      const classes: ClientLimits['classes'] = {};
      let detokenizeItems: RateLimit | undefined;
      for (const [name, text] of Object.entries(limits)) {
        const limit = text === undefined ? null : parseRateLimit(text);
        if (!limit) {
          ctx.addIssue({ code: 'custom', message: `"${client}".${name} must look like <max>/<window>` });
          continue;
        }
        if (name === 'detokenizeItems') detokenizeItems = limit;
        else classes[name as RateLimitClass] = limit;
      }
      out[client] = { classes, ...(detokenizeItems ? { detokenizeItems } : {}) };
    }
    return out;
  });

export const limitsShape = {
  RATE_LIMIT_TOKENIZE: rateLimit(DEFAULT_RATE_LIMITS.tokenize),
  RATE_LIMIT_DETOKENIZE: rateLimit(DEFAULT_RATE_LIMITS.detokenize),
  RATE_LIMIT_LOOKUP: rateLimit(DEFAULT_RATE_LIMITS.lookup),
  RATE_LIMIT_ADMIN: rateLimit(DEFAULT_RATE_LIMITS.admin),
  RATE_LIMIT_UNAUTHENTICATED: rateLimit(DEFAULT_RATE_LIMITS.unauthenticated),
  DETOKENIZE_ITEMS_LIMIT: rateLimit(DEFAULT_RATE_LIMITS.detokenizeItems),
  RATE_LIMITS_FILE: perClient,
  RATE_LIMIT_FAIL_OPEN: z
    .string()
    .default('tokenize')
    .transform((text) => text.split(',').map((part) => part.trim()).filter(Boolean))
    .pipe(z.array(z.enum(RATE_LIMIT_CLASSES, { message: 'may list tokenize, detokenize, lookup, admin' }))),
};

export function rateLimitsOf(parsed: z.output<z.ZodObject<typeof limitsShape>>): RateLimitsConfig {
  return {
    tokenize: parsed.RATE_LIMIT_TOKENIZE,
    detokenize: parsed.RATE_LIMIT_DETOKENIZE,
    lookup: parsed.RATE_LIMIT_LOOKUP,
    admin: parsed.RATE_LIMIT_ADMIN,
    unauthenticated: parsed.RATE_LIMIT_UNAUTHENTICATED,
    detokenizeItems: parsed.DETOKENIZE_ITEMS_LIMIT,
    perClient: parsed.RATE_LIMITS_FILE,
    failOpen: parsed.RATE_LIMIT_FAIL_OPEN,
  };
}

/** The defaults as parsed limits, for callers that build a configuration in code (tests, the bench). */
export function defaultRateLimits(): RateLimitsConfig {
  const limits = Object.fromEntries(Object.entries(DEFAULT_RATE_LIMITS).map(([name, text]) => [name, parseRateLimit(text)!])) as Record<keyof typeof DEFAULT_RATE_LIMITS, RateLimit>;
  return { ...limits, perClient: {}, failOpen: ['tokenize'] };
}
