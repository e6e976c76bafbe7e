import type { FastifyInstance } from 'fastify';
import { z } from 'zod';

const READY_TIMEOUT_MS = 1_000;

/**
 * Liveness and readiness, unthrottled: an orchestrator's probe must not fail because of someone else's traffic.
 * Concurrent readiness probes share one database round trip, so a flood of them costs the database little.
 */
export default async function healthRoutes(app: FastifyInstance, { storageAnswers }: { storageAnswers: () => Promise<void> }) {
  let probe: Promise<boolean> | null = null;
  const ready = () =>
    (probe ??= new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS);
      storageAnswers().then(
        () => resolve(true),
        () => resolve(false),
      ).finally(() => clearTimeout(timer));
    }).finally(() => (probe = null)));

  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['operations'], response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: the database answers within a second',
        tags: ['operations'],
        response: { 200: z.object({ status: z.literal('ready') }), 503: z.object({ status: z.literal('unavailable') }) },
      },
    },
    async (_request, reply) => ((await ready()) ? { status: 'ready' as const } : reply.code(503).header('retry-after', '1').send({ status: 'unavailable' })),
  );
}
