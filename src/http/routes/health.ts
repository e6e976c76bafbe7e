import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Db } from '../../store/db.js';

const READY_TIMEOUT_MS = 1_000;

export interface HealthRoutesOptions {
  db: Db;
}

export default async function healthRoutes(app: FastifyInstance, { db }: HealthRoutesOptions) {
  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['operations'], response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({ status: 'ok' }));

  // Ready means the database answers within a second; master keys were checked against it at start-up.
  app.get('/readyz', {
      schema: {
        summary: 'Readiness: the database answers',
        tags: ['operations'],
        response: { 200: z.object({ status: z.literal('ready') }), 503: z.object({ status: z.literal('unavailable') }) },
      },
    }, async (_request, reply) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        db.query('SELECT 1'),
        new Promise((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error('readiness probe timed out')), READY_TIMEOUT_MS);
        }),
      ]);
      return { status: 'ready' };
    } catch {
      return reply.code(503).header('retry-after', '1').send({ status: 'unavailable' });
    } finally {
      clearTimeout(timer);
    }
  });
}
