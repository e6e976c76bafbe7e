const WEAK_WORDS = ['change-me', 'changeme', 'secret', 'password', 'example', 'default'];
const KEYBOARD_ROWS = ['`1234567890-=', 'qwertyuiop[]\\', "asdfghjkl;'", 'zxcvbnm,./'];
const KEY_POSITION = new Map<string, [number, number]>();
KEYBOARD_ROWS.forEach((row, r) => [...row].forEach((key, c) => KEY_POSITION.set(key, [r, c])));

/** Two neighbouring characters a person would type in a row: equal, consecutive in code, or keys side by side. */
function predictableStep(a: string, b: string): boolean {
  if (Math.abs(a.codePointAt(0)! - b.codePointAt(0)!) <= 1) return true;
  const [pa, pb] = [KEY_POSITION.get(a.toLowerCase()), KEY_POSITION.get(b.toLowerCase())];
  return pa !== undefined && pb !== undefined && pa[0] === pb[0] && Math.abs(pa[1] - pb[1]) === 1;
}

// Random text has short walks by chance; six characters in a row, several times over, it has not.
const MIN_WALK = 6;

/** How many characters sit in walks of predictable steps at least MIN_WALK long (`abcdef`, `qwerty`, `aaaaaa`). */
function charactersInWalks(chars: string[]): number {
  let covered = 0;
  let walk = 1;
  for (let i = 1; i <= chars.length; i++) {
    if (i < chars.length && predictableStep(chars[i - 1]!, chars[i]!)) walk++;
    else {
      if (walk >= MIN_WALK) covered += walk;
      walk = 1;
    }
  }
  return covered;
}

/**
 * The shortest period that repeats through most of the text (`abcabcab…`): at least 12 characters, and three in
 * four, equal to the one a period later. By chance, random text matches that almost never.
 */
function period(text: string): number | null {
  for (let p = 1; p <= text.length - 12; p++) {
    let same = 0;
    for (let i = 0; i + p < text.length; i++) if (text[i] === text[i + p]) same++;
    if (same >= 12 && same >= 0.75 * (text.length - p)) return p;
  }
  return null;
}

/**
 * Why a shared secret is not real randomness, or null: it must be at least 32 bytes and read like the output of
 * a random generator (base64, hex or raw printable), not a phrase, a keyboard walk, a count or a repetition.
 * Random text passes with an overwhelming margin: its characters are mostly distinct and rarely follow on.
 */
export function secretWeakness(text: string): string | null {
  const chars = [...text];
  if (Buffer.byteLength(text, 'utf8') < 32) return 'must be at least 32 bytes';
  const lower = text.toLowerCase();
  if (WEAK_WORDS.some((word) => lower.includes(word))) return 'is a placeholder, not a secret';
  const distinct = new Set(chars).size;
  if (distinct < 12 || chars.length * Math.log2(distinct) < 128 || charactersInWalks(chars) > 0.5 * chars.length || period(text) !== null) {
    return 'is not random enough: use 32 random bytes, e.g. `openssl rand -base64 48`';
  }
  return null;
}
