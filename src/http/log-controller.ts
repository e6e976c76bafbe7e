import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import { safeErrorFields } from '../logger.js';

/**
 * The vault's whole request-logging policy: one line per request with the route pattern (never the URL, whose
 * path or query could carry a number), status, timing, caller and problem code. Never a body, a header, or an
 * error message, which can quote what the caller sent.
 */
export class VaultLogController extends LogController {
  override incomingRequest(): void {}

  override routeNotFound(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = {
      method: request.method,
      route: request.routeOptions.url ?? null,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      ...(request.identity ? { tenant: request.identity.tenant, client: request.identity.client } : {}),
      ...(reply.itemCount !== null ? { items: reply.itemCount } : {}),
      ...(reply.errorCode ? { code: reply.errorCode } : {}),
      ...(error ? { err: safeErrorFields(error) } : {}),
    };
    if (error || reply.statusCode >= 500) reply.log.error(line, 'request');
    else reply.log.info(line, 'request');
  }

  override defaultErrorLog(error: Error, _request: FastifyRequest, reply: FastifyReply): void {
    reply.log.error({ err: safeErrorFields(error) }, 'unhandled error');
  }

  override streamError(error: Error, _request: FastifyRequest, reply: FastifyReply): void {
    reply.log.warn({ err: safeErrorFields(error) }, 'response stream failed');
  }

  override writeHeadError(error: Error, _request: FastifyRequest, reply: FastifyReply): void {
    reply.log.warn({ err: safeErrorFields(error) }, 'writing headers failed');
  }

  override serializerError(error: Error, _request: FastifyRequest, reply: FastifyReply): void {
    reply.log.error({ err: safeErrorFields(error) }, 'response serialization failed');
  }
}
