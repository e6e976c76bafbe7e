import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * JSON lines. The redaction is a second line of defence: the code never hands a body, a header or a number
 * to the logger in the first place (src/http/log-controller.ts).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'phonevault' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['req.headers', 'headers', 'authorization', '*.authorization', 'body', '*.body', 'phone', '*.phone', 'token', 'jwt'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}
