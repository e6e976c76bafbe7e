import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ErrorCode } from '../errors.js';
import type { Identity } from '../identity.js';
import type { Caller } from '../vault/caller.js';

/** What a request carries from hook to hook, declared and decorated here and nowhere else. */
declare module 'fastify' {
  interface FastifyRequest {
    /** Who the verified credential says is calling (src/http/auth.ts); null until then, or if it did not verify. */
    identity: Identity | null;
    /** Set when the credential could not be checked because the issuer's keys are out of reach. */
    identityUnavailable: boolean;
    /** The identity with this request's id and stated purpose, as the use-cases take it (src/http/guard.ts). */
    caller: Caller | null;
  }
  interface FastifyReply {
    /** How many numbers or tokens the request carried, for the log line. */
    itemCount: number | null;
    /** The problem code this reply carried, for the log line. */
    errorCode: ErrorCode | null;
    /** A more precise audit action than the route's, for a refusal's record (e.g. a masked read). */
    auditAction: string | null;
  }
  interface FastifyContextConfig {
    /** The audit action of a route: its use-case records successes; src/http/refusals.ts counts the rest. */
    audit?: string;
  }
}

async function requestState(app: FastifyInstance) {
  app.decorateRequest('identity', null);
  app.decorateRequest('identityUnavailable', false);
  app.decorateRequest('caller', null);
  app.decorateReply('itemCount', null);
  app.decorateReply('errorCode', null);
  app.decorateReply('auditAction', null);
}

export default fp(requestState, { name: 'phonevault-request-state', fastify: '5.x' });
