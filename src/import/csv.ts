/**
 * CSV records as byte spans (RFC 4180: quoted fields, doubled quotes, line breaks inside quotes, CRLF or LF).
 * An import replaces one field and must leave every other byte of the row as it was, so it needs where each field
 * lies, which a parsing library does not say; and resuming needs byte offsets. Delimiters, quotes and line breaks
 * are ASCII, and no byte of a multi-byte UTF-8 character is, so scanning bytes is scanning characters.
 */

const QUOTE = 0x22;
const CR = 0x0d;
const LF = 0x0a;
const COMMA = 0x2c;

export interface CsvRecord {
  /** Start and end (exclusive) of each raw field, quotes included, in pairs: [s0, e0, s1, e1, …]. */
  spans: number[];
  /** Where the record's line break (if any) begins. */
  contentEnd: number;
  /** Where the next record begins. */
  end: number;
}

export class CsvError extends Error {}

/**
 * The record starting at `at`, or null when the bytes end inside it and more may come (`final` false). At the
 * end of the input (`final`), a record without a line break ends there; an unterminated quote is a CsvError.
 */
export function scanRecord(bytes: Buffer, at: number, final: boolean): CsvRecord | null {
  const spans: number[] = [];
  let i = at;
  for (;;) {
    const start = i;
    if (bytes[i] === QUOTE) {
      i++;
      for (;;) {
        if (i >= bytes.length) {
          if (final) throw new CsvError('a quoted field is not closed');
          return null;
        }
        if (bytes[i] === QUOTE) {
          if (i + 1 >= bytes.length && !final) return null;
          if (bytes[i + 1] === QUOTE) i += 2;
          else {
            i++;
            break;
          }
        } else i++;
      }
      if (i < bytes.length && bytes[i] !== COMMA && bytes[i] !== CR && bytes[i] !== LF) throw new CsvError('text after a closing quote');
    } else {
      while (i < bytes.length && bytes[i] !== COMMA && bytes[i] !== CR && bytes[i] !== LF) {
        if (bytes[i] === QUOTE) throw new CsvError('a quote inside an unquoted field');
        i++;
      }
    }
    spans.push(start, i);
    if (i >= bytes.length) {
      if (!final) return null;
      return { spans, contentEnd: i, end: i };
    }
    if (bytes[i] === COMMA) {
      i++;
      continue;
    }
    // CRLF, or LF; a CR alone ends the record too.
    const contentEnd = i;
    if (bytes[i] === CR) {
      if (i + 1 >= bytes.length && !final) return null;
      i += bytes[i + 1] === LF ? 2 : 1;
    } else i++;
    return { spans, contentEnd, end: i };
  }
}

/** A raw field's value: quotes removed and doubled quotes undone. */
export function fieldValue(bytes: Buffer, start: number, end: number): string {
  if (bytes[start] !== QUOTE) return bytes.toString('utf8', start, end);
  return bytes.toString('utf8', start + 1, end - 1).replaceAll('""', '"');
}

/** The record with field `index` replaced by `text` (written unquoted: the caller's text needs no quoting). */
export function replaceField(bytes: Buffer, record: CsvRecord, at: number, index: number, text: string): Buffer {
  const start = record.spans[index * 2]!;
  const end = record.spans[index * 2 + 1]!;
  return Buffer.concat([bytes.subarray(at, start), Buffer.from(text), bytes.subarray(end, record.end)]);
}
