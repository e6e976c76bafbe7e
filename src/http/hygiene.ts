import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { errorCodes, type FastifyBodyParser } from 'fastify';
import type { ErrorCode } from '../errors.js';
import { isSafeText } from '../text.js';

const NOT_PLAIN = /[^\t\x20-\x7e]/;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/gi;
const UTF8 = /^utf-?8$/i;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A URL component is acceptable when its percent-encoding decodes to valid UTF-8 that is safe text. */
function cleanComponent(text: string): boolean {
  try {
    return isSafeText(decodeURIComponent(text.replaceAll('+', ' ')));
  } catch {
    return false;
  }
}

/** A header value as Node hands it over (one character per byte): valid UTF-8, no controls but tab. */
function cleanHeaderValue(value: string): boolean {
  if (!NOT_PLAIN.test(value)) return true;
  try {
    return isSafeText(utf8.decode(Buffer.from(value, 'latin1')).replaceAll('\t', ' '));
  } catch {
    return false;
  }
}

/**
 * What is wrong with a request before any route sees it, or null: NUL, other controls or invalid UTF-8 in its
 * path, query or any header value, or two Content-Types (400), a body in another charset than UTF-8 (415), or an
 * Expect other than 100-continue (417). Every text the vault
 * takes is then valid text, so none can fail in the database, a log line or the audit trail.
 */
export type RequestFault = Extract<ErrorCode, 'invalid_request' | 'unsupported_media_type' | 'expectation_failed'>;

export function requestFault(raw: IncomingMessage): RequestFault | null {
  const url = raw.url ?? '';
  const question = url.indexOf('?');
  if (!cleanComponent(question === -1 ? url : url.slice(0, question))) return 'invalid_request';
  if (question !== -1 && !cleanComponent(url.slice(question + 1))) return 'invalid_request';
  const headers = raw.rawHeaders;
  let contentTypes = 0;
  for (let i = 0; i < headers.length; i += 2) {
    if (!cleanHeaderValue(headers[i + 1]!)) return 'invalid_request';
    if (headers[i]!.length === 12 && headers[i]!.toLowerCase() === 'content-type') contentTypes++;
  }
  // Node keeps the first of two Content-Types; a proxy or the next reader may keep the other.
  if (contentTypes > 1) return 'invalid_request';
  // Every charset named, not only the first: `charset=utf-8; charset=latin1` is not UTF-8 to every reader.
  for (const [, charset] of (raw.headers['content-type'] ?? '').matchAll(CHARSET)) if (!UTF8.test(charset!)) return 'unsupported_media_type';
  // Node would answer a bare 417 of its own (src/app.ts routes such requests here instead).
  const expect = raw.headers.expect;
  if (expect !== undefined && expect.trim().toLowerCase() !== '100-continue') return 'expectation_failed';
  return null;
}

/**
 * The JSON body parser: the bytes must be UTF-8 (RFC 8259 §8.1) before Fastify's own parser reads them. Fastify
 * decodes a body as text first, turning invalid bytes into U+FFFD, so a malformed body went on as other text.
 */
export function utf8JsonParser(parseJson: FastifyBodyParser<string>): FastifyBodyParser<Buffer> {
  return (request, body, done) => {
    if (!isUtf8(body)) return done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined);
    return parseJson(request, body.toString('utf8'), done);
  };
}
