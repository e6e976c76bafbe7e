import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import type { RateLimit, RateLimitClass, RateLimitsConfig } from '../config/index.js';
import { isVaultError, VaultError } from '../errors.js';
import { createMemoryCounters, createRedisCounters, type Counters } from './counters.js';

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

declare module 'fastify' {
  interface FastifyInstance {
    /** A client's budget for one class of calls, or its IP's unauthenticated budget when unverified. */
    throttle: (limitClass: RateLimitClass) => Hook;
    /** The IP's unauthenticated budget, for routes that take no credential (404s, docs, metrics). */
    throttleByIp: Hook;
    /**
     * Spends one of an address's unauthenticated budget outside any route (framework errors, requests HTTP
     * cannot parse); false when spent.
     */
    spendIpBudget: (ip: string) => Promise<boolean>;
    /** Spends `items` of the client's detokenize item budget, or answers 429. */
    spendDetokenizeItems: (request: FastifyRequest, reply: FastifyReply, items: number) => Promise<void>;
  }
}

export interface ThrottleOptions {
  limits: RateLimitsConfig;
  /** Shared counters for several instances; in-process counters when absent. */
  redis?: Redis | undefined;
}

const retryIn = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

// Keys name the class and the client (length-prefixed, so that no tenant/sub pair collides with another's), or
// the IP: one budget per class and client, and one per IP, whichever route spends it.
const clientKey = (prefix: string, request: FastifyRequest) => `${prefix}:${request.identity!.tenant.length}:${request.identity!.tenant}:${request.identity!.client}`;
const ipKey = (request: FastifyRequest) => `ip:${request.ip}`;

const storeDown = () => new VaultError('unavailable', 'the throttling store is unreachable; retry shortly');

/**
 * One store of counters for every route, so that a budget is the same whichever route spends it: the plugin's own
 * stores are one per route in memory and one per key in Redis. Same answers in memory and in Redis (counters.ts).
 */
function sharedStore(counters: Counters) {
  const store = {
    incr(key: string, done: (error: Error | null, result?: { current: number; ttl: number }) => void, timeWindow: number) {
      counters.add(key, 1, timeWindow).then(
        ({ count, resetMs }) => done(null, { current: count, ttl: resetMs }),
        (error: Error) => done(error),
      );
    },
    child: () => store,
  };
  // The plugin constructs its store with `new`; a constructor that returns an object hands back that object.
  return function SharedStore() {
    return store;
  };
}

async function throttle(app: FastifyInstance, options: ThrottleOptions) {
  const { limits, redis } = options;
  const counters = redis ? createRedisCounters(redis) : createMemoryCounters();
  await app.register(rateLimit, {
    global: false,
    store: sharedStore(counters) as never,
    errorResponseBuilder: (_request, context) => new VaultError('rate_limited', `rate limit reached; retry in ${retryIn(context.ttl)} s`),
  });

  const limitOf = (request: FastifyRequest, limitClass: RateLimitClass): RateLimit =>
    request.identity ? (limits.perClient[`${request.identity.tenant}/${request.identity.client}`]?.classes[limitClass] ?? limits[limitClass]) : limits.unauthenticated;

  /** A store failure fails closed (503) unless the class is configured to fail open. */
  const guarded = (hook: Hook, failOpen: boolean): Hook =>
    async function (this: FastifyInstance, request, reply) {
      try {
        return await hook.call(this, request, reply);
      } catch (error) {
        if (isVaultError(error)) throw error;
        if (failOpen) {
          request.log.warn('throttling store unreachable; serving unthrottled');
          return undefined;
        }
        throw storeDown();
      }
    };

  app.decorate('throttle', (limitClass: RateLimitClass) =>
    guarded(
      app.rateLimit({
        keyGenerator: (request) => (request.identity ? clientKey(`rl:${limitClass}`, request) : ipKey(request)),
        max: (request) => limitOf(request, limitClass).max,
        timeWindow: (request) => limitOf(request, limitClass).windowMs,
      }),
      limits.failOpen.includes(limitClass),
    ),
  );

  app.decorate('throttleByIp', guarded(app.rateLimit({ keyGenerator: ipKey, max: limits.unauthenticated.max, timeWindow: limits.unauthenticated.windowMs }), true));

  app.decorate('spendIpBudget', async (ip: string) => {
    try {
      return (await counters.add(`ip:${ip}`, 1, limits.unauthenticated.windowMs)).count <= limits.unauthenticated.max;
    } catch {
      return true;
    }
  });

  app.decorate('spendDetokenizeItems', async (request: FastifyRequest, reply: FastifyReply, items: number) => {
    const identity = request.identity!;
    const limit = limits.perClient[`${identity.tenant}/${identity.client}`]?.detokenizeItems ?? limits.detokenizeItems;
    let spent;
    try {
      spent = await counters.spend(clientKey('items:detokenize', request), items, limit.max, limit.windowMs);
    } catch {
      throw storeDown();
    }
    reply.header('x-ratelimit-items-limit', limit.max);
    reply.header('x-ratelimit-items-remaining', Math.max(0, limit.max - spent.count));
    reply.header('x-ratelimit-items-reset', retryIn(spent.resetMs));
    if (!spent.allowed) {
      reply.header('retry-after', retryIn(spent.resetMs));
      throw new VaultError('rate_limited', `detokenize item budget spent (${limit.max} per window); retry in ${retryIn(spent.resetMs)} s`);
    }
  });
}

export default fp(throttle, { name: 'phonevault-throttle', fastify: '5.x', dependencies: ['phonevault-request-state', 'phonevault-auth'] });
