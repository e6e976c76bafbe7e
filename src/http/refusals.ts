import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { AuditEvent } from '../audit/chain.js';
import { safeErrorFields } from '../logger.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Records every refusal counted so far, whatever its minute (shutdown does the same). */
    flushRefusals: () => Promise<void>;
  }
}

export function outcomeOf(status: number): string {
  if (status === 403) return 'denied';
  if (status === 404) return 'not_found';
  if (status === 429) return 'throttled';
  return status < 500 ? 'rejected' : 'failed';
}

const MINUTE = 60_000;
// Distinct (client, action, outcome) rows held per minute before they are written early.
const MAX_ROWS = 10_000;

/**
 * The audit record of answers that returned and changed nothing (denied, throttled, rejected, not found,
 * failed): one row per tenant, client, action, outcome and minute, its `items` the count. A flood of refusals
 * writes rows in proportion to minutes, not requests, and the requests that succeed are recorded by their
 * use-cases, with their data (src/store/audit-log.ts). A row covers what this instance saw in that minute.
 */
async function refusals(app: FastifyInstance, options: { record: (events: AuditEvent[]) => Promise<Array<{ tenant: string | undefined; events: number; error: unknown }>> }) {
  const rows = new Map<string, AuditEvent>();

  async function flush(before: number): Promise<void> {
    const due: AuditEvent[] = [];
    for (const [key, event] of rows) {
      if (event.occurredAt.getTime() >= before) continue;
      due.push(event);
      rows.delete(key);
    }
    if (due.length === 0) return;
    let unrecorded;
    try {
      unrecorded = await options.record(due);
    } catch (error) {
      unrecorded = [{ tenant: undefined, events: due.length, error }];
    }
    for (const { tenant, events, error } of unrecorded) app.log.warn({ err: safeErrorFields(error), tenant, rows: events }, 'refusal counts not recorded');
  }

  app.addHook('onResponse', async (request, reply) => {
    const action = reply.auditAction ?? request.routeOptions.config.audit;
    if (!action || !request.identity || reply.statusCode < 300) return;
    const minute = Math.floor(Date.now() / MINUTE) * MINUTE;
    const outcome = outcomeOf(reply.statusCode);
    const { tenant, client } = request.identity;
    const key = `${minute}\u0000${tenant.length}:${tenant}\u0000${client}\u0000${action}\u0000${outcome}`;
    const row = rows.get(key);
    if (row) row.items++;
    else {
      rows.set(key, { tenant, client, action, items: 1, outcome, requestId: null, purpose: null, occurredAt: new Date(minute) });
      if (rows.size >= MAX_ROWS) void flush(Number.POSITIVE_INFINITY);
    }
  });

  // Each minute's rows are written once the minute is over.
  const timer = setInterval(() => void flush(Math.floor(Date.now() / MINUTE) * MINUTE), 10_000);
  timer.unref();
  app.decorate('flushRefusals', () => flush(Number.POSITIVE_INFINITY));
  app.addHook('onClose', async () => {
    clearInterval(timer);
    await flush(Number.POSITIVE_INFINITY);
  });
}

export default fp(refusals, { name: 'phonevault-refusals', fastify: '5.x', dependencies: ['phonevault-request-state'] });
