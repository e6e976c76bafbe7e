import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { RateLimitClass } from '../config.js';
import type { Scope } from './auth.js';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The one onRequest hook of every /v1 route, in order: verify the bearer token, spend the caller's budget
     * for the class (or the IP's, unverified), then refuse without a valid token (401) or a needed scope (403).
     * One hook rather than four: the same checks, a quarter of the hook overhead on the hot path.
     */
    guard: (limitClass: RateLimitClass, ...anyOf: Scope[]) => (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

async function guard(app: FastifyInstance) {
  app.decorate('guard', (limitClass: RateLimitClass, ...anyOf: Scope[]) => {
    const throttle = app.throttle(limitClass);
    const requireScope = app.requireScope(...anyOf);
    return async function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      await app.identify(request);
      await throttle.call(this, request, reply);
      await app.requireIdentity(request, reply);
      await requireScope(request, reply);
    };
  });
}

export default fp(guard, { name: 'phonevault-guard', fastify: '5.x', dependencies: ['phonevault-auth', 'phonevault-throttle'] });
