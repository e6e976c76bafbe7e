import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { getHeapStatistics } from 'node:v8';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createCheckpointer } from './audit/checkpointer.js';
import type { Config } from './config/index.js';
import type { KekSet } from './crypto/kek.js';
import { openKeks } from './crypto/open-keks.js';
import { VaultError, type ErrorCode } from './errors.js';
import auth from './http/auth.js';
import guard from './http/guard.js';
import { requestFault, utf8JsonParser, type RequestFault } from './http/hygiene.js';
import { VaultLogController } from './http/log-controller.js';
import metrics from './http/metrics.js';
import { OPENAPI_DOCUMENT, openapiTransforms } from './http/openapi.js';
import { createSchemaRegistry } from './http/schemas.js';
import { errorHandler, PROBLEMS, sendProblem } from './http/problem.js';
import refusals from './http/refusals.js';
import requestState from './http/request-state.js';
import apiKeyRoutes from './http/routes/api-keys.js';
import auditRoutes from './http/routes/audit.js';
import detokenizeRoutes from './http/routes/detokenize.js';
import eraseRoutes from './http/routes/erase.js';
import healthRoutes from './http/routes/health.js';
import keysRoutes from './http/routes/keys.js';
import lookupRoutes from './http/routes/lookup.js';
import tokenizeRoutes from './http/routes/tokenize.js';
import { serializerCompiler } from './http/serializer.js';
import throttle from './http/throttle.js';
import type { Db } from './store/db.js';
import { createApiKeyVerifier } from './vault/api-keys.js';
import { openVault } from './vault/deps.js';
import { keyStats, storageAnswers } from './vault/health.js';
import { createOffload } from './vault/offload.js';
import { createVault } from './vault/vault.js';

export type AppConfig = Pick<Config, 'kek' | 'keyMaxEncryptions' | 'keyRotationMinIntervalMs' | 'jwt' | 'trustProxy' | 'rateLimits' | 'batchMax' | 'bodyLimit' | 'audit'> &
  Partial<Pick<Config, 'tls' | 'offloadThreads' | 'apiKeys'>>;

export interface AppDeps {
  db: Db;
  logger: Logger;
  /** Shared throttling counters; in-process counters when absent. */
  redis?: Redis | undefined;
  /** KEKs opened by the caller (who closes them); opened from `config.kek` and closed with the app when absent. */
  keks?: KekSet;
  /** Event-loop delay (ms) past which requests are shed with 503, and how often it is sampled. */
  loadShedding?: { maxEventLoopDelayMs: number; sampleIntervalMs: number };
}

/**
 * Framework errors before any route runs (a malformed URL, an over-long parameter): the vault's own answer,
 * counted against the IP like any unauthenticated request, and logged like any other (no route runs to do it).
 */
function frameworkError(app: FastifyInstance, logController: VaultLogController) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    reply.raw.once('finish', () => logController.requestCompleted(null, request, reply));
    const [code, detail] =
      error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? (['uri_too_long', 'the request path is too long'] as const) : error.code === 'FST_ERR_BAD_URL' ? (['invalid_request', 'the request path is malformed'] as const) : (['internal_error', 'the request could not be completed'] as const);
    void app.spendIpBudget(request.ip).then((allowed) => {
      if (allowed) return sendProblem(reply, code, detail);
      reply.header('retry-after', '60');
      return sendProblem(reply, 'rate_limited', 'rate limit reached; retry later');
    });
  };
}

const FAULT_DETAILS: Record<RequestFault, string> = {
  invalid_request: 'the request holds characters or headers the vault does not accept',
  unsupported_media_type: 'send application/json in UTF-8',
  expectation_failed: 'the vault meets no expectation but 100-continue',
};

const STATUS_LINES: Record<number, string> = { 400: 'Bad Request', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large' };

/**
 * A request too malformed for HTTP itself: the vault's problem+json answer with a request id of its own, logged by
 * its parser code, never echoed, and counted against the address like any unauthenticated request. Not behind a
 * proxy, though: there every client would share the proxy's address, and one could spend everyone's budget.
 */
function clientError(logger: Logger, spend: (ip: string) => Promise<boolean>, behindProxy: boolean) {
  return (error: Error & { code?: string }, socket: Socket) => {
    if (error.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const own: ErrorCode = error.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : 'invalid_request';
    const answer = (code: ErrorCode) => {
      const id = randomUUID();
      const { status, title } = PROBLEMS[code];
      const text = JSON.stringify({ type: `urn:phonevault:problem:${code}`, title, status, code, detail: 'the request could not be read', instance: `urn:phonevault:request:${id}` });
      logger.warn({ reqId: id, code: typeof error.code === 'string' ? error.code : undefined, status }, 'malformed request');
      if (!socket.writable) return void socket.destroy();
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_LINES[status]}\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\nx-request-id: ${id}\r\n${code === 'rate_limited' ? 'retry-after: 60\r\n' : ''}connection: close\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
    };
    const ip = socket.remoteAddress;
    if (behindProxy || !ip) return answer(own);
    spend(ip).then(
      (allowed) => answer(allowed ? own : 'rate_limited'),
      () => answer(own),
    );
  };
}

/** Builds the vault's HTTP app; it never listens (src/server.ts does) and never reads the environment. */
export async function buildApp(config: AppConfig, deps: AppDeps): Promise<FastifyInstance> {
  const logController = new VaultLogController();
  let app: FastifyInstance;
  app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController,
    // A client-supplied id could smuggle anything into the logs: ours are always generated here.
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    bodyLimit: config.bodyLimit,
    routerOptions: { maxParamLength: 64 },
    frameworkErrors: (error, request, reply) => frameworkError(app, logController)(error, request, reply),
    clientErrorHandler: clientError(deps.logger, (ip) => (app?.spendIpBudget ? app.spendIpBudget(ip) : Promise.resolve(true)), config.trustProxy.length > 0),
    ...(config.tls ? { https: { cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' as const } } : {}),
  }) as unknown as FastifyInstance;
  // Node answers an Expect other than 100-continue with a bare 417 of its own unless told otherwise: send such
  // requests through the app, whose onRequest hook refuses them as the vault does everything else.
  app.server.on('checkExpectation', (request, response) => app.routing(request, response));
  // JSON only: a text/plain body would otherwise reach validation as a string.
  app.removeContentTypeParser('text/plain');
  // Poisoning refused as Fastify's default parser does ('error'), once the bytes are known to be UTF-8.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: config.bodyLimit }, utf8JsonParser(app.getDefaultJsonParser('error', 'error')));
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const offload = createOffload({ threads: config.offloadThreads ?? 0, logger: deps.logger });
  app.addHook('onClose', () => offload.close());
  let checkpointer: ReturnType<typeof createCheckpointer> | null = null;
  const keks = deps.keks ?? (await openKeks(config.kek, deps.logger));
  if (!deps.keks) app.addHook('onClose', () => keks.close());
  const vaultDeps = await openVault({
    db: deps.db,
    keks,
    keyMaxEncryptions: config.keyMaxEncryptions,
    logger: deps.logger,
    offload,
    rotationMinAgeMs: config.keyRotationMinIntervalMs,
    onAuditAdvance: (tenant, head, appended) => checkpointer?.advanced(tenant, head, appended),
  });
  checkpointer = createCheckpointer({ key: vaultDeps.auditKey, logger: deps.logger, everyEvents: config.audit.checkpointEvents, intervalMs: config.audit.checkpointIntervalMs });
  const vault = createVault(vaultDeps);
  const apiKeys = config.apiKeys ?? true;

  // Before any plugin or route is registered, so that every route, the plugins' own included, inherits them.
  app.setErrorHandler(errorHandler);
  // Before any route sees it: text the vault cannot take is refused, and counted against the IP like a 404.
  app.addHook('onRequest', async (request, reply) => {
    const fault = requestFault(request.raw);
    if (!fault) return;
    if (!(await app.spendIpBudget(request.ip))) {
      reply.header('retry-after', '60');
      throw new VaultError('rate_limited', 'rate limit reached; retry later');
    }
    throw new VaultError(fault, FAULT_DETAILS[fault]);
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    reply.header('cache-control', 'no-store');
  });

  await app.register(requestState);
  await app.register(auth, { jwt: config.jwt, apiKeys: apiKeys ? createApiKeyVerifier(vaultDeps.apiKeys, vaultDeps.apiKeyHashKey, deps.logger) : null });
  await app.register(throttle, { limits: config.rateLimits, redis: deps.redis });
  const schemas = createSchemaRegistry();
  await app.register(swagger, { openapi: OPENAPI_DOCUMENT, ...openapiTransforms(schemas.registry) });
  // In a context of their own, so that every route of the docs, their static assets included, spends the IP's budget.
  await app.register(async (docs) => {
    docs.addHook('onRequest', app.throttleByIp);
    await docs.register(swaggerUi, { routePrefix: '/docs' });
  });
  await app.register(underPressure, {
    maxEventLoopDelay: deps.loadShedding?.maxEventLoopDelayMs ?? 1_000,
    // Shed load before the heap limit turns into an out-of-memory crash (the image caps the heap to keep RSS low).
    maxHeapUsedBytes: Math.floor(getHeapStatistics().heap_size_limit * 0.9),
    sampleInterval: deps.loadShedding?.sampleIntervalMs ?? 1_000,
    retryAfter: 5,
    pressureHandler: (_request, reply) => {
      reply.header('retry-after', '5');
      sendProblem(reply, 'unavailable', 'the vault is overloaded; retry shortly');
    },
  });
  await app.register(metrics, { keyMaxEncryptions: config.keyMaxEncryptions, pool: () => deps.db.stats(), keyStats: () => keyStats(vaultDeps), keks: () => keks.health() });
  await app.register(guard, { purposes: config.audit.purposes });
  await app.register(refusals, { record: (events) => vault.recordEvents(events) });
  // After the refusals are recorded (onClose runs in registration order), the last heads go to the log.
  app.addHook('onClose', async () => checkpointer?.close());
  app.setNotFoundHandler({ preHandler: app.throttleByIp }, (_request, reply) => sendProblem(reply, 'not_found', 'no such resource'));

  await app.register(healthRoutes, { storageAnswers: () => storageAnswers(vaultDeps), schemas });
  await app.register(tokenizeRoutes, { vault, batchMax: config.batchMax, schemas });
  await app.register(detokenizeRoutes, { vault, batchMax: config.batchMax, schemas });
  await app.register(lookupRoutes, { vault, schemas });
  await app.register(eraseRoutes, { vault, schemas });
  await app.register(keysRoutes, { vault, schemas });
  await app.register(auditRoutes, { vault, schemas });
  if (apiKeys) await app.register(apiKeyRoutes, { vault, schemas });
  app.get('/openapi.json', { schema: { hide: true }, onRequest: app.throttleByIp }, async () => app.swagger());
  return app;
}
