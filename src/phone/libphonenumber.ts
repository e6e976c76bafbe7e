import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * libphonenumber-js (its `max` metadata) as the vault uses it, with one change: the metadata's regular
 * expressions are compiled once and kept. As shipped, its `matchesEntirely` helper builds `new RegExp(pattern)`
 * for every test, several per parse — about half of a parse's time (9.4 → 4.7 µs a parse with the patterns kept;
 * batch tokenize +12%, README → Performance).
 *
 * The CommonJS build, because its modules call the helper through its exports object at each call
 * (`_matchesEntirely.default(…)`), so that replacing that one property reaches every caller; an ES module's
 * binding cannot be replaced. The kept patterns are the metadata's own (the number is the text tested, never
 * the key), so the cache is bounded by the metadata and holds nothing personal; a RegExp without the g or y
 * flag keeps no state between tests. Should a later version change the helper's shape, the library runs as
 * shipped — slower, same answers — and test/phone/libphonenumber.test.ts fails.
 */
const require = createRequire(import.meta.url);

export const libphonenumber = require('libphonenumber-js/max') as typeof import('libphonenumber-js/max');

/** The metadata the parser above uses, the same object (one copy in memory). */
export const metadata = require('libphonenumber-js/max/metadata') as Record<string, unknown>;

type MatchesEntirely = (text: string | undefined, pattern: string) => boolean;

const helperFile = join(dirname(require.resolve('libphonenumber-js/max')), '..', 'build', 'helpers', 'matchesEntirely.js');
// Far more than the metadata holds (a few thousand patterns); past it, patterns are compiled per call again.
const MAX_PATTERNS = 20_000;

function keepCompiledPatterns(): { helper: { default: MatchesEntirely }; shipped: MatchesEntirely } | null {
  let helper: { default?: unknown };
  try {
    helper = require(helperFile) as { default?: unknown };
  } catch {
    return null;
  }
  const shipped = helper.default;
  if (typeof shipped !== 'function' || shipped.length !== 2) return null;
  const compiled = new Map<string, RegExp>();
  const kept: MatchesEntirely = (text, pattern) => {
    let regexp = compiled.get(pattern);
    if (regexp === undefined) {
      regexp = new RegExp(`^(?:${pattern})$`);
      if (compiled.size < MAX_PATTERNS) compiled.set(pattern, regexp);
    }
    return regexp.test(text || '');
  };
  helper.default = kept;
  return { helper: helper as { default: MatchesEntirely }, shipped: shipped as MatchesEntirely };
}

const installed = keepCompiledPatterns();

/** Whether the compiled patterns are kept (false: the library runs as shipped). */
export const patternsKept = installed !== null;

/** Runs `fn` with the library's own helper, as shipped: for the test that holds both to the same answers. */
export function withShippedPatterns<T>(fn: () => T): T {
  if (!installed) return fn();
  const kept = installed.helper.default;
  installed.helper.default = installed.shipped;
  try {
    return fn();
  } finally {
    installed.helper.default = kept;
  }
}
