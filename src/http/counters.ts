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

/**
 * Windows by key, bounded: a key maps to a slot of two typed arrays (its count and its end), so that a window
 * costs its key and a map entry, not an object and a boxed number besides (issue 14: 100,000 clients' windows
 * were 14 MB as objects). The map keeps insertion order, which is start order: the oldest go first, in constant
 * time, and their slots are reused.
 */
function windowStore(maxKeys: number) {
  const slots = new Map<string, number>();
  const counts = new Float64Array(maxKeys);
  const ends = new Float64Array(maxKeys);
  const free: number[] = [];
  let used = 0;
  return {
    /** The key's live window's slot, if any. */
    live(key: string, time: number): number | undefined {
      const slot = slots.get(key);
      return slot !== undefined && ends[slot]! > time ? slot : undefined;
    },
    count: (slot: number) => counts[slot]!,
    endsAt: (slot: number) => ends[slot]!,
    add(slot: number, n: number) {
      counts[slot]! += n;
    },
    /** Starts the key's window (its expired one, if any, goes) and returns its slot. */
    open(key: string, endsAt: number, time: number): number {
      let slot = slots.get(key);
      slots.delete(key);
      for (const [oldest, oldestSlot] of slots) {
        // Expired ones first; then, full of live windows, the oldest goes, so that memory stays bounded.
        const full = slot === undefined && free.length === 0 && used === maxKeys;
        if (ends[oldestSlot]! > time && !full) break;
        slots.delete(oldest);
        if (slot === undefined) slot = oldestSlot;
        else free.push(oldestSlot);
      }
      slot ??= free.pop() ?? used++;
      counts[slot] = 0;
      ends[slot] = endsAt;
      slots.set(key, slot);
      return slot;
    },
  };
}

export function createMemoryCounters(now: () => number = Date.now, limits = { addresses: MAX_ADDRESSES, clients: MAX_CLIENTS }): Counters {
  // A flood of addresses (a botnet, an IPv6 prefix) must never evict a client's spent budget, and so reset it.
  const addresses = windowStore(limits.addresses);
  const clients = windowStore(limits.clients);
  const storeOf = (key: string) => (key.startsWith(ADDRESS) ? addresses : clients);
  const windowOf = (key: string, windowMs: number) => {
    const time = now();
    const store = storeOf(key);
    const slot = store.live(key, time) ?? store.open(key, time + windowMs, time);
    return { store, slot, time };
  };
  return {
    async add(key, n, windowMs) {
      const { store, slot, time } = windowOf(key, windowMs);
      store.add(slot, n);
      return { count: store.count(slot), resetMs: store.endsAt(slot) - time };
    },
    async spend(key, n, max, windowMs) {
      // A spend refused on an empty window opens none, as in Redis, where the key is only made by a count.
      if (n > max && storeOf(key).live(key, now()) === undefined) return { allowed: false, count: 0, resetMs: windowMs };
      const { store, slot, time } = windowOf(key, windowMs);
      const allowed = store.count(slot) + n <= max;
      if (allowed) store.add(slot, n);
      return { allowed, count: store.count(slot), resetMs: store.endsAt(slot) - time };
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
