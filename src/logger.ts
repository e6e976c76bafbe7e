import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * JSON lines, one a request. The code never hands a body, a header or a number to the logger in the first place
 * (src/http/log-controller.ts); the redaction of a few top-level keys is a second line of defence that costs
 * little, unlike wildcard paths.
 */
export function createLogger(level: string, destination: DestinationStream = bufferedStdout()): Logger {
  return pino(
    {
      level,
      base: { service: 'phonevault' },
      redact: { paths: ['headers', 'authorization', 'body', 'phone', 'jwt', 'req', 'request'], censor: '[redacted]' },
    },
    destination,
  );
}

/**
 * Standard output, written 4 KiB at a time or every 100 ms, not a write a line: under load, one write a request
 * line was a measurable part of a request's CPU. pino flushes what is held when the process exits; a SIGKILL
 * loses at most that.
 */
const bufferedStdout = () => pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 100 });

/** What of an error may be logged: its class and code (a SQLSTATE, a system code), never its message or detail, which can echo stored values. */
export function safeErrorFields(error: unknown): { type: string; code?: string } {
  const { name, code } = (error ?? {}) as { name?: unknown; code?: unknown };
  return { type: typeof name === 'string' ? name : 'Error', ...(typeof code === 'string' && /^[A-Za-z0-9_]{1,40}$/.test(code) ? { code } : {}) };
}
