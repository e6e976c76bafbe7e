const MAX_PURPOSE = 200;

/**
 * The caller's stated reason (`x-purpose`), kept for the audit trail but never able to carry a number: digit
 * runs of three or more become `#`, and anything but letters, digits, spaces and light punctuation is dropped.
 */
export function sanitizePurpose(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const cleaned = value
    .normalize('NFKC')
    .replace(/[^\p{L}\p{N} .,:;_#/()-]/gu, '')
    .replace(/\p{Nd}{3,}/gu, (run) => '#'.repeat(run.length))
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, MAX_PURPOSE);
  return cleaned === '' ? null : cleaned;
}
