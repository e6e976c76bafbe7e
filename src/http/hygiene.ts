import type { IncomingMessage } from 'node:http';
import type { ErrorCode } from '../errors.js';
import { isSafeText } from '../text.js';

const NOT_PLAIN = /[^\t\x20-\x7e]/;
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
 * path, query or any header value (400), or a body in another charset than UTF-8 (415). Every text the vault
 * takes is then valid text, so none can fail in the database, a log line or the audit trail.
 */
export function requestFault(raw: IncomingMessage): ErrorCode | null {
  const url = raw.url ?? '';
  const question = url.indexOf('?');
  if (!cleanComponent(question === -1 ? url : url.slice(0, question))) return 'invalid_request';
  if (question !== -1 && !cleanComponent(url.slice(question + 1))) return 'invalid_request';
  const headers = raw.rawHeaders;
  for (let i = 1; i < headers.length; i += 2) if (!cleanHeaderValue(headers[i]!)) return 'invalid_request';
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(raw.headers['content-type'] ?? '')?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') return 'unsupported_media_type';
  return null;
}
