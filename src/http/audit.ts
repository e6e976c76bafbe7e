import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { AuditEvent } from '../audit/chain.js';
import { sanitizePurpose } from '../audit/purpose.js';
import type { AuditRepository } from '../store/audit-repository.js';
import type { Audited } from '../vault/vault.js';
import { safeErrorFields } from '../store/db.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The audit action of a route; every answer an identified caller gets from it is recorded. */
    audit?: string;
  }
  interface FastifyReply {
    /** A more precise action than the route's, chosen by the handler (e.g. masked reads). */
    auditAction: string | null;
    /** The handler already committed this request's success event with its own statement (detokenize). */
    auditRecorded: boolean;
  }
}

function outcomeOf(status: number): string {
  if (status < 400) return 'ok';
  if (status === 403) return 'denied';
  if (status === 404) return 'not_found';
  if (status === 429) return 'throttled';
  return status < 500 ? 'rejected' : 'failed';
}

const UNRECORDED = JSON.stringify({
  type: 'urn:phonevault:problem:unavailable',
  title: 'Service unavailable',
  status: 503,
  code: 'unavailable',
  detail: 'the audit trail cannot be written; nothing was returned',
});

/** This request's audit event, as its answer stands now. */
export function auditEventOf(request: FastifyRequest, reply: FastifyReply): AuditEvent {
  const identity = request.identity!;
  return {
    tenant: identity.tenant,
    client: identity.client,
    action: reply.auditAction ?? request.routeOptions.config.audit ?? 'unknown',
    items: reply.itemCount ?? 0,
    outcome: outcomeOf(reply.statusCode),
    requestId: request.id,
    purpose: sanitizePurpose(request.headers['x-purpose']),
    occurredAt: new Date(),
  };
}

/**
 * This request's success event, for a use-case to commit in the same statement as its own read or write (one
 * round trip, one commit, durable before the answer exists); onSend then leaves it be, unless the answer fails
 * after all, which gets an event of its own.
 */
export function recordedWith(reply: FastifyReply, request: FastifyRequest): Audited {
  return { event: { ...auditEventOf(request, reply), outcome: 'ok' }, recorded: () => (reply.auditRecorded = true) };
}

/**
 * Records an audit event for every answer of an audited route to an identified caller, before the answer
 * leaves: no audit, no data. A success whose event cannot be written is replaced by a 503; a failure's event
 * is written on a best-effort basis.
 */
async function audit(app: FastifyInstance, options: { audit: AuditRepository }) {
  app.decorateReply('auditAction', null);
  app.decorateReply('auditRecorded', false);

  app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload) => {
    if (!request.routeOptions.config.audit || !request.identity) return payload;
    // Committed by the handler's own read or insert (recordedWith); a failure after that gets an event of its own.
    if (reply.auditRecorded && reply.statusCode < 400) return payload;
    const event = auditEventOf(request, reply);
    try {
      await options.audit.append([event]);
      return payload;
    } catch (error) {
      request.log.error({ err: safeErrorFields(error) }, 'audit event not written');
      if (reply.statusCode >= 400) return payload;
      reply.errorCode = 'unavailable';
      reply.code(503).header('content-type', 'application/problem+json; charset=utf-8').header('retry-after', '1');
      return UNRECORDED;
    }
  });
}

export default fp(audit, { name: 'phonevault-audit', fastify: '5.x' });
