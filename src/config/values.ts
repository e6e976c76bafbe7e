import { z } from 'zod';

export interface RateLimit {
  max: number;
  windowMs: number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `5s`, `1m`, `24h`, `90d`: milliseconds, or null. */
export function parseDuration(text: string): number | null {
  const match = /^(\d+)\s*(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return null;
  const ms = Number(match[1]) * UNITS[match[2]!]!;
  return Number.isSafeInteger(ms) ? ms : null;
}

/** `<max>/<window>`, e.g. `600/1m` or `10/s`. */
export function parseRateLimit(text: string): RateLimit | null {
  const match = /^(\d+)\s*\/\s*(\d*)\s*(ms|s|m|h)$/.exec(text.trim());
  if (!match) return null;
  const max = Number(match[1]);
  const windowMs = Number(match[2] || '1') * UNITS[match[3]!]!;
  return max > 0 && windowMs > 0 ? { max, windowMs } : null;
}

export const required = z.string({ message: 'is required' }).min(1, { message: 'is required' });

export const integer = (fallback: number, min: number, max: number) =>
  z.coerce
    .number({ message: 'must be a whole number' })
    .int({ message: 'must be a whole number' })
    .min(min, { message: `must be at least ${min}` })
    .max(max, { message: `must be at most ${max}` })
    .default(fallback);

export const rateLimit = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const parsed = parseRateLimit(text);
      if (!parsed) ctx.addIssue({ code: 'custom', message: 'must look like <max>/<window>, e.g. 600/1m' });
      return parsed ?? { max: 1, windowMs: 1 };
    });

export const duration = (fallback: string, atLeastMs = 0) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const parsed = parseDuration(text);
      if (parsed === null || parsed < atLeastMs) ctx.addIssue({ code: 'custom', message: `must be a duration such as 30s, 5m or 24h` });
      return parsed ?? atLeastMs;
    });

/** A comma-separated list, blanks dropped. */
export const list = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text) => text.split(',').map((part) => part.trim()).filter(Boolean));
