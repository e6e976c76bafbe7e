import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { CountryCode, PhoneNumber } from 'libphonenumber-js/max';

/**
 * libphonenumber-js (its `max` metadata) as the vault uses it, with two shortcuts that change its cost, not its
 * answers (test/phone/libphonenumber.test.ts holds every answer to the library's as shipped):
 *
 * - The metadata's regular expressions are compiled once and kept. As shipped, its `matchesEntirely` helper
 *   builds `new RegExp(pattern)` for every test, several per parse: about half of a parse's time.
 *   The kept patterns are the metadata's own (the number is the text tested, never the key), so the cache is
 *   bounded by the metadata and holds nothing personal; a RegExp without the g or y flag keeps no state.
 * - A parse calls the library's `parse` with the options it would reach anyway (`v2: true`), skipping the public
 *   wrapper's argument handling and its Babel object spreads, a third of what remained.
 *
 * Both work on the library's CommonJS build, whose modules call each other through their exports objects
 * (`_matchesEntirely.default(…)`), so that replacing one property reaches every caller; ES module bindings cannot
 * be replaced, and an install-time patch would not run in the image (`npm ci --ignore-scripts`). They are taken
 * only with the exact version they were checked against (PINNED_VERSION, read from the installed package at
 * start-up): any other version runs as shipped, slower, same answers, and the differential test fails until the
 * shortcuts are checked again and the pin moved.
 */
const require = createRequire(import.meta.url);
const library = require('libphonenumber-js/max') as typeof import('libphonenumber-js/max');
const packageRoot = join(dirname(require.resolve('libphonenumber-js/max')), '..');

/** The metadata the library parses with, the same object (one copy in memory). */
export const metadata = require('libphonenumber-js/max/metadata') as Record<string, unknown>;

export const { isSupportedCountry } = library;

/** The libphonenumber-js release the shortcuts below were checked against, answer for answer. */
export const PINNED_VERSION = '1.13.16';
export const installedVersion = (require(join(packageRoot, 'package.json')) as { version: string }).version;
const pinned = installedVersion === PINNED_VERSION;

function buildModule(file: string): { default?: unknown } | null {
  if (!pinned) return null;
  try {
    return require(join(packageRoot, 'build', file)) as { default?: unknown };
  } catch {
    return null;
  }
}

type MatchesEntirely = (text: string | undefined, pattern: string) => boolean;
type Parse = (text: string, options: { defaultCountry?: CountryCode | undefined; extract: false; v2: true }, metadata: unknown) => PhoneNumber;

// Far more than the metadata holds (a few thousand patterns); past it, patterns are compiled per call again.
const MAX_PATTERNS = 20_000;

const matcher = buildModule('helpers/matchesEntirely.js');
const shippedMatcher = typeof matcher?.default === 'function' && matcher.default.length === 2 ? (matcher.default as MatchesEntirely) : null;
const compiled = new Map<string, RegExp>();
const keptMatcher: MatchesEntirely = (text, pattern) => {
  let regexp = compiled.get(pattern);
  if (regexp === undefined) {
    regexp = new RegExp(`^(?:${pattern})$`);
    if (compiled.size < MAX_PATTERNS) compiled.set(pattern, regexp);
  }
  return regexp.test(text || '');
};
if (shippedMatcher) matcher!.default = keptMatcher;

const parseModule = buildModule('parse.js');
const internalParse = typeof parseModule?.default === 'function' && parseModule.default.length === 3 ? (parseModule.default as Parse) : null;
let useInternalParse = internalParse !== null;

/** Which shortcuts are taken (both, with the pinned version). */
export const shortcuts = { patternsKept: shippedMatcher !== null, internalParse: internalParse !== null };

/**
 * A number in any human format, international or national with `defaultCountry`, never extracted from other
 * text (`extract: false`). Throws libphonenumber's ParseError when it is not a number at all.
 */
export function parseStrict(text: string, defaultCountry: CountryCode | undefined): PhoneNumber {
  if (useInternalParse) return internalParse!(text, { defaultCountry, extract: false, v2: true }, metadata);
  return library.parsePhoneNumberWithError(text, { defaultCountry, extract: false });
}

/** Runs `fn` with the library exactly as shipped: for the test that holds both to the same answers. */
export function asShipped<T>(fn: () => T): T {
  const taken = useInternalParse;
  useInternalParse = false;
  if (shippedMatcher) matcher!.default = shippedMatcher;
  try {
    return fn();
  } finally {
    useInternalParse = taken;
    if (shippedMatcher) matcher!.default = keptMatcher;
  }
}
