import type { Redis } from 'ioredis';
import type { RateLimit } from '../config.js';

export interface Spend {
  allowed: boolean;
  remaining: number;
  resetMs: number;
}

/**
 * Budgets counted in items rather than requests (a detokenize of 1000 tokens spends 1000), in fixed windows.
 * A request that would overdraw the budget spends nothing and is refused whole.
 */
export interface ItemBudget {
  spend(key: string, items: number, limit: RateLimit): Promise<Spend>;
}

export function createMemoryItemBudget(now: () => number = Date.now): ItemBudget {
  const windows = new Map<string, { used: number; resetAt: number }>();
  return {
    async spend(key, items, limit) {
      const time = now();
      let window = windows.get(key);
      if (!window || window.resetAt <= time) {
        window = { used: 0, resetAt: time + limit.windowMs };
        windows.set(key, window);
      }
      if (windows.size > 10_000) for (const [k, w] of windows) if (w.resetAt <= time) windows.delete(k);
      const allowed = window.used + items <= limit.max;
      if (allowed) window.used += items;
      return { allowed, remaining: limit.max - window.used, resetMs: window.resetAt - time };
    },
  };
}

// Atomic in Redis: read, refuse or add, and start the window's expiry on its first spend.
const SPEND_SCRIPT = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local items = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
if used + items > max then
  return {0, used, redis.call('PTTL', KEYS[1])}
end
used = redis.call('INCRBY', KEYS[1], items)
if used == items then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, used, redis.call('PTTL', KEYS[1])}`;

export function createRedisItemBudget(redis: Redis, namespace = 'phonevault-items:'): ItemBudget {
  return {
    async spend(key, items, limit) {
      const [allowed, used, ttl] = (await redis.eval(SPEND_SCRIPT, 1, namespace + key, items, limit.max, limit.windowMs)) as [number, number, number];
      return { allowed: allowed === 1, remaining: Math.max(0, limit.max - used), resetMs: ttl > 0 ? ttl : limit.windowMs };
    },
  };
}
