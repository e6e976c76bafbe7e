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

// A phrase is guessed a word at a time: a word is one of some 2,000 common ones, said again it adds nothing new.
const WORD_BITS = 11;
const MIN_BITS = 128;
const WORD = /^(?:[A-Z]?[a-z]{2,11}|[A-Z]{2,5})$/;
const NUMBER = /^[0-9]{1,4}$/;
// camelCase words run together, perhaps ending in a year and a mark: ThisIsMySigningKey2024!
const CAMEL_PHRASE = /^(?:[A-Z][a-z]{1,11}){4,}[0-9]{0,4}[!?.]?$/;

/**
 * The bits a guesser who tries phrases needs, when the text is one: four words or more, in separated pieces
 * (`the quick brown fox`, `acme-prod-jwt-key-2024`) or in camelCase, making up nearly all of it. Null when the
 * text is not a phrase; random base64, base64url and hex never are (none in millions of trials).
 */
function phraseBits(text: string): number | null {
  const camel = CAMEL_PHRASE.test(text);
  const separators = text.match(/[ \-_.,]/g)?.length ?? 0;
  if (!camel && separators < 3) return null;
  const pieces = camel ? (text.match(/[A-Z][a-z]+|[0-9]+|[!?.]/g) ?? []) : text.split(/[ \-_.,/:]+/).filter(Boolean);
  const seen = new Set<string>();
  let words = 0;
  let covered = 0;
  let bits = 0;
  for (const piece of pieces) {
    const word = WORD.test(piece) && (/[aeiouy]/i.test(piece) || piece.length <= 4);
    if (!word && !NUMBER.test(piece)) continue;
    covered += piece.length;
    if (!word) {
      bits += piece.length * Math.log2(10);
      continue;
    }
    words++;
    bits += seen.has(piece.toLowerCase()) ? 0 : WORD_BITS;
    seen.add(piece.toLowerCase());
  }
  const body = text.replace(/[ \-_.,/:]/g, '').length;
  if (words < 4 || covered < 0.8 * body) return null;
  return bits + (body - covered) * Math.log2(62);
}

/**
 * Why a shared secret is not real randomness, or null: it must be at least 32 bytes and read like the output of
 * a random generator (base64, hex or raw printable), not a phrase of words, a keyboard walk, a count or a
 * repetition. Random text passes with an overwhelming margin: its characters are mostly distinct and rarely follow on.
 */
export function secretWeakness(text: string): string | null {
  const chars = [...text];
  if (Buffer.byteLength(text, 'utf8') < 32) return 'must be at least 32 bytes';
  const lower = text.toLowerCase();
  if (WEAK_WORDS.some((word) => lower.includes(word))) return 'is a placeholder, not a secret';
  const distinct = new Set(chars).size;
  if (distinct < 12 || chars.length * Math.log2(distinct) < MIN_BITS || (phraseBits(text) ?? MIN_BITS) < MIN_BITS || charactersInWalks(chars) > 0.5 * chars.length || period(text) !== null) {
    return 'is not random enough: use 32 random bytes, e.g. `openssl rand -base64 48`';
  }
  return null;
}
