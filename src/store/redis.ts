import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { safeErrorFields } from '../logger.js';

/**
 * A Redis client that fails fast: no offline queue and short timeouts, so that a Redis outage turns into a
 * quick 503 (or fail-open, per class) instead of requests that hang. It reconnects by itself.
 */
export function createRedis(url: string, logger?: Logger): Redis {
  const redis = new Redis(url, {
    connectTimeout: 500,
    commandTimeout: 500,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
  let down = false;
  redis.on('error', (error) => {
    if (!down) logger?.warn({ err: safeErrorFields(error) }, 'redis unreachable');
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger?.info('redis reachable again');
    down = false;
  });
  return redis;
}
