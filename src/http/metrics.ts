import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { KekHealth } from '../crypto/kek.js';
import { DATA_KEY_STATES } from '../crypto/keyring.js';

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

export interface MetricsOptions {
  keyMaxEncryptions: number;
  /** Pool use of the database. */
  pool: () => { total: number; idle: number; waiting: number };
  keyStats: () => Promise<{ states: Map<string, number>; maxActiveEncryptions: number }>;
  /** The KEKs by id and provider, with the last call's outcome: never material. */
  keks: () => KekHealth[];
}

async function metrics(app: FastifyInstance, options: MetricsOptions) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'phonevault_' });
  app.decorate('metrics', createMetrics(registry));

  new Gauge({
    name: 'phonevault_db_pool_connections',
    help: 'Database pool connections by state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const stats = options.pool();
      this.set({ state: 'total' }, stats.total);
      this.set({ state: 'idle' }, stats.idle);
      this.set({ state: 'waiting' }, stats.waiting);
    },
  });
  // One query for both key gauges per scrape.
  let keyStats: Promise<{ states: Map<string, number>; maxActiveEncryptions: number }> | null = null;
  const stats = () => (keyStats ??= options.keyStats().finally(() => setImmediate(() => (keyStats = null))));
  new Gauge({
    name: 'phonevault_data_keys',
    help: 'Data key versions by state',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const { states } = await stats();
      for (const state of DATA_KEY_STATES) this.set({ state }, states.get(state) ?? 0);
    },
  });
  new Gauge({
    name: 'phonevault_data_key_budget_used_ratio',
    help: 'The largest encryption count of any active data key, as a share of VAULT_KEY_MAX_ENCRYPTIONS',
    registers: [registry],
    async collect() {
      this.set((await stats()).maxActiveEncryptions / options.keyMaxEncryptions);
    },
  });

  new Gauge({
    name: 'phonevault_kek_up',
    help: 'Whether the last call to each key-encryption key succeeded (1) or found it unreachable (0)',
    labelNames: ['kek', 'provider', 'active'] as const,
    registers: [registry],
    collect() {
      for (const kek of options.keks()) this.set({ kek: kek.id, provider: kek.provider, active: String(kek.active) }, kek.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'phonevault_kek_failures',
    help: 'Calls to each key-encryption key that found it unreachable, since start',
    labelNames: ['kek', 'provider'] as const,
    registers: [registry],
    collect() {
      for (const kek of options.keks()) this.set({ kek: kek.id, provider: kek.provider }, kek.failures);
    },
  });

  app.addHook('onResponse', async (request, reply) => {
    app.metrics.requestDuration.observe(
      { route: request.routeOptions.url ?? 'unmatched', method: request.method, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  app.get('/metrics', { schema: { hide: true }, onRequest: app.throttleByIp }, async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
}

export default fp(metrics, { name: 'phonevault-metrics', fastify: '5.x', dependencies: ['phonevault-throttle'] });
