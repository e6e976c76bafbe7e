import type { Redis } from 'ioredis';

export interface Count {
  /** The key's count in its current window, after this call. */
  count: number;
  /** Milliseconds until the window ends. */
  resetMs: number;
}

/**
 * Fixed-window counters, in process or in Redis, with exactly the same answers for the same sequence of calls:
 * a window starts at a key's first count and lasts `windowMs`. `add` always counts (a request refused for its
 * rate still spent it); `spend` counts only when the total stays within `max` (an item budget is never overdrawn).
 */
export interface Counters {
  add(key: string, n: number, windowMs: number): Promise<Count>;
  spend(key: string, n: number, max: number, windowMs: number): Promise<Count & { allowed: boolean }>;
}

/** Bounds per store: addresses apart from identified clients, so that a flood of addresses evicts only addresses. */
const MAX_ADDRESSES = 100_000;
const MAX_CLIENTS = 100_000;
const ADDRESS = 'ip:';

interface Window {
  count: number;
  endsAt: number;
}

/** Windows by key in insertion order (which is start order), bounded: the oldest go first, in constant time. */
function windowStore(maxKeys: number) {
  const windows = new Map<string, Window>();
  return {
    get: (key: string) => windows.get(key),
    open(key: string, window: Window, time: number) {
      windows.delete(key);
      for (const [oldest, w] of windows) {
        // Expired ones first; then, full of live windows, the oldest goes, so that memory stays bounded.
        if (w.endsAt > time && windows.size < maxKeys) break;
        windows.delete(oldest);
      }
      windows.set(key, window);
    },
  };
}

export function createMemoryCounters(now: () => number = Date.now, limits = { addresses: MAX_ADDRESSES, clients: MAX_CLIENTS }): Counters {
  // A flood of addresses (a botnet, an IPv6 prefix) must never evict a client's spent budget, and so reset it.
  const addresses = windowStore(limits.addresses);
  const clients = windowStore(limits.clients);
  const storeOf = (key: string) => (key.startsWith(ADDRESS) ? addresses : clients);
  const windows = { get: (key: string) => storeOf(key).get(key) };
  const windowOf = (key: string, windowMs: number) => {
    const time = now();
    let window = windows.get(key);
    if (!window || window.endsAt <= time) {
      window = { count: 0, endsAt: time + windowMs };
      storeOf(key).open(key, window, time);
    }
    return { window, time };
  };
  return {
    async add(key, n, windowMs) {
      const { window, time } = windowOf(key, windowMs);
      window.count += n;
      return { count: window.count, resetMs: window.endsAt - time };
    },
    async spend(key, n, max, windowMs) {
      // A spend refused on an empty window opens none, as in Redis, where the key is only made by a count.
      const live = windows.get(key);
      if (n > max && (!live || live.endsAt <= now())) return { allowed: false, count: 0, resetMs: windowMs };
      const { window, time } = windowOf(key, windowMs);
      const allowed = window.count + n <= max;
      if (allowed) window.count += n;
      return { allowed, count: window.count, resetMs: window.endsAt - time };
    },
  };
}

// Both atomic in Redis; the window's expiry is set by its first count, as in memory.
const ADD = `
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {count, redis.call('PTTL', KEYS[1])}`;

const SPEND = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[1])
  return {0, count, ttl}
end
count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, count, redis.call('PTTL', KEYS[1])}`;

type Script = (key: string, ...args: Array<string | number>) => Promise<number[]>;

export function createRedisCounters(redis: Redis, namespace = 'phonevault:'): Counters {
  // Defined once, then sent by digest (EVALSHA) rather than as text on every call.
  const scripts = redis as unknown as { phonevaultAdd?: Script; phonevaultSpend?: Script };
  if (!scripts.phonevaultAdd) redis.defineCommand('phonevaultAdd', { numberOfKeys: 1, lua: ADD });
  if (!scripts.phonevaultSpend) redis.defineCommand('phonevaultSpend', { numberOfKeys: 1, lua: SPEND });
  const resetOf = (ttl: number, windowMs: number) => (ttl > 0 ? ttl : windowMs);
  return {
    async add(key, n, windowMs) {
      const [count, ttl] = (await scripts.phonevaultAdd!(namespace + key, n, windowMs)) as [number, number];
      return { count, resetMs: resetOf(ttl, windowMs) };
    },
    async spend(key, n, max, windowMs) {
      const [allowed, count, ttl] = (await scripts.phonevaultSpend!(namespace + key, n, max, windowMs)) as [number, number, number];
      return { allowed: allowed === 1, count, resetMs: resetOf(ttl, windowMs) };
    },
  };
}
