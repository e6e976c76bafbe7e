import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../store/db.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: ReturnType<typeof createMetrics>;
  }
}

/** Every label has a bounded set of values: route patterns, methods, statuses, outcomes. Never a tenant. */
function createMetrics(registry: Registry) {
  return {
    requestDuration: new Histogram({
      name: 'phonevault_http_request_duration_seconds',
      help: 'HTTP request duration by route pattern, method and status',
      labelNames: ['route', 'method', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    tokenizeItems: new Counter({
      name: 'phonevault_tokenize_items_total',
      help: 'Numbers submitted for tokenization, by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    detokenizeItems: new Counter({
      name: 'phonevault_detokenize_items_total',
      help: 'Tokens submitted for detokenization, by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    decryptionFailures: new Counter({
      name: 'phonevault_decryption_failures_total',
      help: 'Stored envelopes that failed authentication (tampering or corruption)',
      registers: [registry],
    }),
  };
}

async function metrics(app: FastifyInstance, options: { db: Db; keyMaxEncryptions: number; auditAppendedApart?: () => number }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'phonevault_' });
  app.decorate('metrics', createMetrics(registry));

  new Gauge({
    name: 'phonevault_db_pool_connections',
    help: 'Database pool connections by state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const stats = options.db.stats();
      this.set({ state: 'total' }, stats.total);
      this.set({ state: 'idle' }, stats.idle);
      this.set({ state: 'waiting' }, stats.waiting);
    },
  });
  new Gauge({
    name: 'phonevault_data_keys',
    help: 'Data key versions by state',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const result = await options.db.query<{ state: string; n: string }>('SELECT state, count(*) AS n FROM data_keys GROUP BY state');
      for (const state of ['active', 'retired', 'destroyed']) this.set({ state }, 0);
      for (const row of result.rows) this.set({ state: row.state }, Number(row.n));
    },
  });
  new Gauge({
    name: 'phonevault_data_key_budget_used_ratio',
    help: 'The largest encryption count of any active data key, as a share of VAULT_KEY_MAX_ENCRYPTIONS',
    registers: [registry],
    async collect() {
      const result = await options.db.query<{ top: string | null }>(`SELECT max(encryptions) AS top FROM data_keys WHERE state = 'active'`);
      this.set(Number(result.rows[0]?.top ?? 0) / options.keyMaxEncryptions);
    },
  });

  new Counter({
    name: 'phonevault_audit_appended_apart_total',
    help: 'Flushes whose audit events were appended on their own, not in their read or insert, because that statement failed',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ reason: 'failed' }, options.auditAppendedApart?.() ?? 0);
    },
  });

  app.addHook('onResponse', async (request, reply) => {
    app.metrics.requestDuration.observe(
      { route: request.routeOptions.url ?? 'unmatched', method: request.method, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
}

export default fp(metrics, { name: 'phonevault-metrics', fastify: '5.x' });
