import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import type { RateLimit, RateLimitClass, RateLimitsConfig } from '../config.js';
import { isVaultError, VaultError } from '../errors.js';
import { createMemoryItemBudget, createRedisItemBudget } from './item-budget.js';

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest, after identify: a client's budget for one class of calls, or the caller's IP when unverified. */
    throttle: (limitClass: RateLimitClass) => Hook;
    /** For answers to unauthenticated requests (404s): throttled by IP only. */
    throttleByIp: Hook;
    /** Spends `items` of the client's detokenize item budget, or answers 429. */
    spendDetokenizeItems: (request: FastifyRequest, reply: FastifyReply, items: number) => Promise<void>;
  }
}

export interface ThrottleOptions {
  limits: RateLimitsConfig;
  /** Shared counters for several instances; in-process counters when absent. */
  redis?: Redis | undefined;
}

const clientKey = (request: FastifyRequest) => `${request.identity!.tenant}/${request.identity!.client}`;
const retryIn = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

function rateLimited(_request: FastifyRequest, context: { ttl: number }) {
  return new VaultError('rate_limited', `rate limit reached; retry in ${retryIn(context.ttl)} s`);
}

const storeDown = () => new VaultError('unavailable', 'the throttling store is unreachable; retry shortly');

async function throttle(app: FastifyInstance, options: ThrottleOptions) {
  const { limits, redis } = options;
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: rateLimited,
    ...(redis ? { redis, nameSpace: 'phonevault-rl:' } : {}),
  });

  const ipKey = (request: FastifyRequest) => `ip:${request.ip}`;
  const limitOf = (request: FastifyRequest, limitClass: RateLimitClass): RateLimit =>
    request.identity ? (limits.perClient[clientKey(request)]?.classes[limitClass] ?? limits[limitClass]) : limits.unauthenticated;

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
        // Length-prefixed, so that no tenant/sub pair can collide with another's key.
        keyGenerator: (request) =>
          request.identity ? `${limitClass}:${request.identity.tenant.length}:${request.identity.tenant}:${request.identity.client}` : ipKey(request),
        max: (request) => limitOf(request, limitClass).max,
        timeWindow: (request) => limitOf(request, limitClass).windowMs,
      }),
      limits.failOpen.includes(limitClass),
    ),
  );

  app.decorate('throttleByIp', guarded(app.rateLimit({ keyGenerator: ipKey, max: limits.unauthenticated.max, timeWindow: limits.unauthenticated.windowMs }), true));

  const budget = redis ? createRedisItemBudget(redis) : createMemoryItemBudget();
  app.decorate('spendDetokenizeItems', async (request: FastifyRequest, reply: FastifyReply, items: number) => {
    const limit = limits.perClient[clientKey(request)]?.detokenizeItems ?? limits.detokenizeItems;
    const identity = request.identity!;
    let spent;
    try {
      spent = await budget.spend(`detokenize:${identity.tenant.length}:${identity.tenant}:${identity.client}`, items, limit);
    } catch {
      throw storeDown();
    }
    reply.header('x-ratelimit-items-limit', limit.max);
    reply.header('x-ratelimit-items-remaining', spent.remaining);
    reply.header('x-ratelimit-items-reset', retryIn(spent.resetMs));
    if (!spent.allowed) {
      reply.header('retry-after', retryIn(spent.resetMs));
      throw new VaultError('rate_limited', `detokenize item budget spent (${limit.max} per window); retry in ${retryIn(spent.resetMs)} s`);
    }
  });
}

export default fp(throttle, { name: 'phonevault-throttle', fastify: '5.x', dependencies: ['phonevault-auth'] });
