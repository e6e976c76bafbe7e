import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { KekUnavailableError } from '../crypto/kek.js';
import { AuditUnavailable, isVaultError, StorageUnavailableError, type ErrorCode } from '../errors.js';
import { safeErrorFields } from '../logger.js';

/** The one place where an error code becomes an HTTP status and a title. */
export const PROBLEMS: Readonly<Record<ErrorCode, { status: number; title: string }>> = {
  invalid_request: { status: 400, title: 'Invalid request' },
  invalid_json: { status: 400, title: 'Malformed JSON' },
  invalid_phone: { status: 400, title: 'Invalid phone number' },
  invalid_country: { status: 400, title: 'Invalid country' },
  invalid_purpose: { status: 400, title: 'Invalid purpose' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  insufficient_scope: { status: 403, title: 'Insufficient scope' },
  not_found: { status: 404, title: 'Not found' },
  idempotency_in_flight: { status: 409, title: 'Request in flight' },
  idempotency_key_reused: { status: 422, title: 'Idempotency key reused' },
  uri_too_long: { status: 414, title: 'URI too long' },
  headers_too_large: { status: 431, title: 'Request header fields too large' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  expectation_failed: { status: 417, title: 'Expectation failed' },
  rate_limited: { status: 429, title: 'Too many requests' },
  unavailable: { status: 503, title: 'Service unavailable' },
  internal_error: { status: 500, title: 'Internal error' },
};

export function sendProblem(reply: FastifyReply, code: ErrorCode, detail: string): FastifyReply {
  const { status, title } = PROBLEMS[code];
  reply.errorCode = code;
  // Every 429 and 503 says when to come back, as the OpenAPI description promises; a second unless told.
  if ((status === 429 || status === 503) && !reply.hasHeader('retry-after')) reply.header('retry-after', '1');
  return reply
    .code(status)
    .header('cache-control', 'no-store')
    .header('x-request-id', reply.request.id)
    .type('application/problem+json')
    .send({ type: `urn:phonevault:problem:${code}`, title, status, code, detail, instance: `urn:phonevault:request:${reply.request.id}` });
}

/** Describes what was wrong with a field without repeating anything the caller sent (keys included). */
function describeIssue(issue: { keyword: string; instancePath: string; params: Record<string, unknown> }): string {
  const where = issue.instancePath === '/' || issue.instancePath === '' ? 'body' : issue.instancePath.slice(1).replaceAll('/', '.');
  switch (issue.keyword) {
    case 'invalid_type':
      return issue.params.expected === 'never' ? `${where}: unknown field` : `${where}: expected ${String(issue.params.expected)}`;
    case 'unrecognized_keys':
      return `${where}: unknown field`;
    case 'too_big':
      return `${where}: at most ${String(issue.params.maximum)}${issue.params.origin === 'string' ? ' characters' : issue.params.origin === 'array' ? ' items' : ''}`;
    case 'too_small':
      return `${where}: at least ${String(issue.params.minimum)}${issue.params.origin === 'string' ? ' characters' : issue.params.origin === 'array' ? ' items' : ''}`;
    case 'invalid_format':
      return `${where}: wrong format`;
    case 'invalid_value':
      return `${where}: not one of ${((issue.params.values as unknown[]) ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${where}: invalid`;
  }
}

export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (isVaultError(error)) {
    if (error.retryAfterS !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(error.retryAfterS))));
    return sendProblem(reply, error.code, error.detail);
  }
  if (hasZodFastifySchemaValidationErrors(error)) {
    return sendProblem(reply, 'invalid_request', error.validation.slice(0, 5).map(describeIssue).join('; '));
  }
  const status = error.statusCode ?? 500;
  if (status === 413) return sendProblem(reply, 'payload_too_large', 'the request body is too large');
  if (status === 415) return sendProblem(reply, 'unsupported_media_type', 'send application/json');
  if (status >= 400 && status < 500) {
    // Parser messages quote the body they choke on: never pass them on.
    if (error instanceof SyntaxError || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || /JSON|prototype/i.test(error.code ?? '')) {
      return sendProblem(reply, 'invalid_json', 'the body is not valid JSON');
    }
    if (status === 404) return sendProblem(reply, 'not_found', 'no such resource');
    return sendProblem(reply, 'invalid_request', 'the request is malformed');
  }
  if (error instanceof AuditUnavailable) {
    request.log.error({ err: safeErrorFields(error.reason) }, 'audit trail not written; nothing answered or changed');
    reply.header('retry-after', '1');
    return sendProblem(reply, 'unavailable', 'the audit trail cannot be written; nothing was returned or changed');
  }
  if (error instanceof KekUnavailableError) {
    // The id and the provider's return code: never a PIN, a handle's secret or a credential.
    request.log.warn({ kek: error.kekId, reason: error.reason }, 'key-encryption key unavailable');
    reply.header('retry-after', '1');
    return sendProblem(reply, 'unavailable', 'the vault cannot reach its key-encryption key; retry shortly');
  }
  if (error instanceof StorageUnavailableError) {
    request.log.warn({ err: safeErrorFields(error) }, 'storage unavailable');
    reply.header('retry-after', '1');
    return sendProblem(reply, 'unavailable', 'the vault cannot reach its storage; retry shortly');
  }
  request.log.error({ err: safeErrorFields(error) }, 'request failed');
  return sendProblem(reply, 'internal_error', 'the request could not be completed');
}
