import type { FastifyInstance } from 'fastify';
import type { Db } from '../../store/db.js';

export interface HealthRoutesOptions {
  db: Db;
}

export default async function healthRoutes(app: FastifyInstance, { db }: HealthRoutesOptions) {
  app.get('/healthz', async () => ({ status: 'ok' }));

  // Ready means the database answers; master keys were checked against it at start-up.
  app.get('/readyz', async (_request, reply) => {
    try {
      await db.query('SELECT 1');
      return { status: 'ready' };
    } catch {
      return reply.code(503).header('retry-after', '1').send({ status: 'unavailable' });
    }
  });
}
