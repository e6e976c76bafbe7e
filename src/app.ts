import { randomUUID } from 'node:crypto';
import { getHeapStatistics } from 'node:v8';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, validatorCompiler } from 'fastify-type-provider-zod';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import audit from './http/audit.js';
import auth from './http/auth.js';
import guard from './http/guard.js';
import { VaultLogController } from './http/log-controller.js';
import metrics from './http/metrics.js';
import { OPENAPI_DOCUMENT } from './http/openapi.js';
import { errorHandler, sendProblem } from './http/problem.js';
import { serializerCompiler } from './http/serializer.js';
import auditRoutes from './http/routes/audit.js';
import detokenizeRoutes from './http/routes/detokenize.js';
import eraseRoutes from './http/routes/erase.js';
import keysRoutes from './http/routes/keys.js';
import lookupRoutes from './http/routes/lookup.js';
import healthRoutes from './http/routes/health.js';
import tokenizeRoutes from './http/routes/tokenize.js';
import throttle from './http/throttle.js';
import type { Db } from './store/db.js';
import { createVaultDeps } from './vault/deps.js';
import { createOffload } from './vault/offload.js';
import { createVault } from './vault/vault.js';

export type AppConfig = Pick<Config, 'masterKeys' | 'keyMaxEncryptions' | 'jwt' | 'trustProxy' | 'rateLimits' | 'batchMax' | 'bodyLimit'> &
  Partial<Pick<Config, 'tls' | 'offloadThreads'>>;

export interface AppDeps {
  db: Db;
  logger: Logger;
  /** Shared throttling counters; in-process counters when absent. */
  redis?: Redis | undefined;
  /** Event-loop delay (ms) past which requests are shed with 503, and how often it is sampled. */
  loadShedding?: { maxEventLoopDelayMs: number; sampleIntervalMs: number };
}

declare module 'fastify' {
  interface FastifyReply {
    /** How many numbers or tokens the request carried, for the log line. */
    itemCount: number | null;
  }
}

/** Builds the vault's HTTP app; it never listens (src/server.ts does) and never reads the environment. */
export async function buildApp(config: AppConfig, deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new VaultLogController(),
    // A client-supplied id could smuggle anything into the logs: ours are always generated here.
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    bodyLimit: config.bodyLimit,
    routerOptions: { maxParamLength: 64 },
    ...(config.tls ? { https: { cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' as const } } : {}),
  }) as unknown as FastifyInstance;
  // JSON only: a text/plain body would otherwise reach validation as a string.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateReply('errorCode', null);
  app.decorateReply('itemCount', null);

  const offload = createOffload({ threads: config.offloadThreads ?? 0, logger: deps.logger });
  app.addHook('onClose', () => offload.close());
  const vaultDeps = createVaultDeps({ db: deps.db, masterKeys: config.masterKeys, keyMaxEncryptions: config.keyMaxEncryptions, logger: deps.logger, offload });
  const vault = createVault(vaultDeps);

  await app.register(swagger, { openapi: OPENAPI_DOCUMENT, transform: jsonSchemaTransform });
  await app.register(swaggerUi, { routePrefix: '/docs' });
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
  await app.register(metrics, { db: deps.db, keyMaxEncryptions: config.keyMaxEncryptions, auditAppendedApart: vaultDeps.auditAppendedApart });
  await app.register(auth, { jwt: config.jwt });
  await app.register(throttle, { limits: config.rateLimits, redis: deps.redis });
  await app.register(guard);
  await app.register(audit, { audit: vaultDeps.audit });

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    reply.header('cache-control', 'no-store');
  });
  // Before any route is registered, so that every route inherits them.
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler({ preHandler: app.throttleByIp }, (_request, reply) => sendProblem(reply, 'not_found', 'no such resource'));

  await app.register(healthRoutes, { db: deps.db });
  await app.register(tokenizeRoutes, { vault, batchMax: config.batchMax });
  await app.register(detokenizeRoutes, { vault, batchMax: config.batchMax });
  await app.register(lookupRoutes, { vault });
  await app.register(eraseRoutes, { vault });
  await app.register(keysRoutes, { vault });
  await app.register(auditRoutes, { audit: vaultDeps.audit });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
