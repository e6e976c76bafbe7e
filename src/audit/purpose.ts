const MAX_PURPOSE = 200;

/**
 * The caller's stated reason (`x-purpose`), kept for the audit trail but never able to carry a number: digit
 * runs of three or more become `#`, every digit does once five or more remain (a number written in pairs),
 * and anything but letters, digits, spaces and light punctuation is dropped.
 */
export function sanitizePurpose(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const cleaned = value
    .normalize('NFKC')
    .replace(/[^\p{L}\p{N} .,:;_#/()-]/gu, '')
    .replace(/\s+/g, ' ')
    .trim();
  const digits = cleaned.match(/\p{Nd}/gu)?.length ?? 0;
  const safe = digits >= 5 ? cleaned.replace(/\p{Nd}/gu, '#') : cleaned.replace(/\p{Nd}{3,}/gu, (run) => '#'.repeat(run.length));
  const clipped = safe.slice(0, MAX_PURPOSE);
  return clipped === '' ? null : clipped;
}
