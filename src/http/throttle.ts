import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { RateLimit, RateLimitClass } from '../config.js';
import { VaultError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest, after identify: a client's budget for one class of calls, or the caller's IP when unverified. */
    throttle: (limitClass: RateLimitClass) => (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
    /** For answers to unauthenticated requests (404s): throttled by IP only. */
    throttleByIp: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  }
}

export interface ThrottleOptions {
  limits: Record<RateLimitClass, RateLimit> & { unauthenticated: RateLimit };
}

function rateLimited(_request: FastifyRequest, context: { ttl: number }) {
  return new VaultError('rate_limited', `rate limit reached; retry in ${Math.max(1, Math.ceil(context.ttl / 1000))} s`);
}

async function throttle(app: FastifyInstance, options: ThrottleOptions) {
  const { limits } = options;
  await app.register(rateLimit, { global: false, errorResponseBuilder: rateLimited });

  const ipKey = (request: FastifyRequest) => `ip:${request.ip}`;

  app.decorate('throttle', (limitClass: RateLimitClass) => {
    const limitOf = (request: FastifyRequest) => (request.identity ? limits[limitClass] : limits.unauthenticated);
    return app.rateLimit({
      keyGenerator: (request) =>
        // Length-prefixed, so that no tenant/sub pair can collide with another's key.
        request.identity ? `${limitClass}:${request.identity.tenant.length}:${request.identity.tenant}:${request.identity.client}` : ipKey(request),
      max: (request) => limitOf(request).max,
      timeWindow: (request) => limitOf(request).windowMs,
    });
  });

  app.decorate('throttleByIp', app.rateLimit({ keyGenerator: ipKey, max: limits.unauthenticated.max, timeWindow: limits.unauthenticated.windowMs }));
}

export default fp(throttle, { name: 'phonevault-throttle', fastify: '5.x', dependencies: ['phonevault-auth'] });
