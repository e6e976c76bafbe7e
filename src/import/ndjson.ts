/**
 * Where a top-level field's value lies in one NDJSON line, so that an import replaces that value and leaves every
 * other character of the line as it was (a parse and re-serialisation would reformat it, and round large integers).
 * The line is checked with JSON.parse first; this scanner then only walks valid JSON.
 */

export type FieldSpan = { start: number; end: number; value: unknown } | { absent: true } | { invalid: string };

const WS = new Set([' ', '\t', '\n', '\r']);

export function locateField(line: string, name: string): FieldSpan {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { invalid: 'not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { invalid: 'not a JSON object' };
  let i = 0;
  const skipWs = () => {
    while (WS.has(line[i]!)) i++;
  };
  const skipString = () => {
    i++; // the opening quote
    while (line[i] !== '"') i += line[i] === '\\' ? 2 : 1;
    i++;
  };
  const skipValue = () => {
    const c = line[i];
    if (c === '"') return skipString();
    if (c === '{' || c === '[') {
      let depth = 0;
      do {
        const d = line[i];
        if (d === '"') skipString();
        else {
          if (d === '{' || d === '[') depth++;
          else if (d === '}' || d === ']') depth--;
          i++;
        }
      } while (depth > 0);
      return;
    }
    while (i < line.length && line[i] !== ',' && line[i] !== '}' && !WS.has(line[i]!)) i++;
  };
  let found: { start: number; end: number } | null = null;
  skipWs();
  i++; // {
  skipWs();
  while (line[i] !== '}') {
    const keyStart = i;
    skipString();
    const key = JSON.parse(line.slice(keyStart, i)) as string;
    skipWs();
    i++; // :
    skipWs();
    const start = i;
    skipValue();
    if (key === name) {
      // JSON.parse keeps the last of duplicate keys, other readers the first: which one holds the number is unclear.
      if (found) return { invalid: 'the field appears twice' };
      found = { start, end: i };
    }
    skipWs();
    if (line[i] === ',') {
      i++;
      skipWs();
    }
  }
  if (!found) return { absent: true };
  return { ...found, value: (parsed as Record<string, unknown>)[name] };
}
