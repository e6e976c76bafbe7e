import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Vault } from '../../vault/vault.js';
import { bearerSecurity, countryField, IDEMPOTENT, idempotentHeaders, phoneField, REPLAYED_HEADER, tokenField, type SchemaRegistry } from '../schemas.js';

export default async function eraseRoutes(fastify: FastifyInstance, { vault, schemas }: { vault: Vault; schemas: SchemaRegistry }) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const guard = app.guard('lookup', 'erase');

  app.delete(
    '/v1/tokens/:token',
    {
      onRequest: guard,
      config: { audit: 'erase' },
      schema: {
        operationId: 'deleteToken',
        summary: 'Delete one token',
        tags: ['erasure'],
        security: bearerSecurity,
        params: z.object({ token: tokenField }),
        response: { 204: z.null().describe('Deleted'), ...schemas.problems('deleteToken', ['not_found'], { body: true }) },
      },
    },
    async (request, reply) => {
      reply.itemCount = 1;
      await vault.eraseToken(request.caller!, request.params.token);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/erase',
    {
      onRequest: guard,
      config: { audit: 'erase_number' },
      schema: {
        operationId: 'eraseNumber',
        summary: "Delete every token of one number in the caller's tenant (right to erasure)",
        tags: ['erasure'],
        security: bearerSecurity,
        headers: idempotentHeaders,
        body: schemas.named('Erase', z.strictObject({ phone: phoneField, country: countryField.optional() })),
        response: {
          200: schemas.named('Erased', z.object({ erased: z.int().describe('Tokens deleted') }), 'The tokens of the number are gone'),
          ...schemas.problems('eraseNumber', ['invalid_phone', 'invalid_country', ...IDEMPOTENT], { body: true }),
        },
      },
    },
    async (request, reply) => {
      const key = request.headers['idempotency-key'];
      const { value: erased, replayed } = key ? await vault.eraseNumberOnce(request.caller!, request.body, key) : { value: await vault.eraseNumber(request.caller!, request.body), replayed: false };
      if (replayed) reply.header(REPLAYED_HEADER, 'true');
      reply.itemCount = erased;
      return { erased };
    },
  );
}
