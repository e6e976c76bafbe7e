import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { SchemaRegistry } from '../schemas.js';

const READY_TIMEOUT_MS = 1_000;

/**
 * Liveness and readiness, unthrottled: an orchestrator's probe must not fail because of someone else's traffic.
 * Concurrent readiness probes share one database round trip, so a flood of them costs the database little.
 */
export default async function healthRoutes(app: FastifyInstance, { storageAnswers, schemas }: { storageAnswers: () => Promise<void>; schemas: SchemaRegistry }) {
  let probe: Promise<boolean> | null = null;
  const ready = () =>
    (probe ??= new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS);
      storageAnswers().then(
        () => resolve(true),
        () => resolve(false),
      ).finally(() => clearTimeout(timer));
    }).finally(() => (probe = null)));

  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'getHealth',
        summary: 'Liveness',
        tags: ['operations'],
        security: [],
        response: { 200: schemas.named('Health', z.object({ status: z.literal('ok') }), 'The process is alive'), ...schemas.problems('getHealth', [], { authenticated: false }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  // Not ready is an answer of the route's own (application/json); overload is a problem like any other's.
  const notReady = schemas.problems('getReadiness', [], { authenticated: false });
  const unavailable = schemas.named('NotReady', z.object({ status: z.literal('unavailable') }));

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness: the database answers within a second',
        tags: ['operations'],
        security: [],
        response: {
          200: schemas.named('Ready', z.object({ status: z.literal('ready') }), 'The database answers'),
          ...notReady,
          503: { ...notReady[503]!, content: { 'application/json': { schema: unavailable }, ...notReady[503]!.content } },
        },
      },
    },
    async (_request, reply) => ((await ready()) ? { status: 'ready' as const } : reply.code(503).header('retry-after', '1').send({ status: 'unavailable' })),
  );
}
