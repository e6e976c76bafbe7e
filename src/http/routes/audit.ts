import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Vault } from '../../vault/vault.js';
import { bearerSecurity, safeText, timestamp, type SchemaRegistry } from '../schemas.js';

const eventSchema = z.object({
  seq: z.int(),
  occurredAt: timestamp,
  client: z.string(),
  action: z.string(),
  items: z.int(),
  outcome: z.string(),
  requestId: z.string().nullable(),
  purpose: z.string().nullable(),
});

export default async function auditRoutes(fastify: FastifyInstance, { vault, schemas }: { vault: Vault; schemas: SchemaRegistry }) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/audit',
    {
      onRequest: app.guard('admin', 'admin'),
      config: { audit: 'audit_read' },
      schema: {
        operationId: 'listAuditEvents',
        summary: "The caller's tenant's audit events, oldest first, paged by seq",
        tags: ['audit'],
        security: bearerSecurity,
        querystring: z.strictObject({
          after: z.coerce.number().int().min(0).optional().describe('Only events after this seq (the previous page\'s `next`)'),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
          client: safeText(128).optional(),
          action: z.string().regex(/^[a-z_]{1,32}$/).optional(),
          from: z.iso.datetime({ offset: true }).optional().describe('Events at or after this time'),
          to: z.iso.datetime({ offset: true }).optional().describe('Events before this time'),
        }),
        response: {
          200: schemas.named('AuditPage', z.object({ events: z.array(schemas.named('AuditEvent', eventSchema)), next: z.int().nullable() }), 'A page of events, oldest first'),
          ...schemas.problems('listAuditEvents', []),
        },
      },
    },
    async (request, reply) => {
      const { after, limit, client, action, from, to } = request.query;
      const events = await vault.readAudit(request.caller!, {
        afterSeq: after,
        limit,
        client,
        action,
        from: from ? new Date(from) : undefined,
        to: to ? new Date(to) : undefined,
      });
      reply.itemCount = events.length;
      return {
        events: events.map(({ seq, occurredAt, client: who, action: what, items, outcome, requestId, purpose }) => ({
          seq,
          occurredAt: occurredAt.toISOString(),
          client: who,
          action: what,
          items,
          outcome,
          requestId,
          purpose,
        })),
        next: events.length === limit ? events.at(-1)!.seq : null,
      };
    },
  );
}
