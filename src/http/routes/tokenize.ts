import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Vault } from '../../vault/vault.js';
import { bearerSecurity, countryField, itemErrorSchema, lineTypeField, phoneField, problemResponses, ttlField } from '../schemas.js';

export interface TokenizeRoutesOptions {
  vault: Vault;
  batchMax: number;
}

const tokenizedSchema = z.object({
  token: z.string(),
  country: z.string().nullable(),
  lineType: lineTypeField,
  deterministic: z.boolean(),
  expiresAt: z.string().nullable(),
});

export default async function tokenizeRoutes(fastify: FastifyInstance, { vault, batchMax }: TokenizeRoutesOptions) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const guard = app.guard('tokenize', 'tokenize');

  app.post(
    '/v1/tokenize',
    {
      onRequest: guard,
      config: { audit: 'tokenize' },
      schema: {
        summary: 'Tokenize one phone number',
        tags: ['tokens'],
        security: bearerSecurity,
        body: z.strictObject({ phone: phoneField, country: countryField.optional(), deterministic: z.boolean().default(false), ttlSeconds: ttlField.optional() }),
        response: { 201: tokenizedSchema, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { phone, country, deterministic, ttlSeconds } = request.body;
      reply.itemCount = 1;
      let tokenized;
      try {
        tokenized = await vault.tokenize(request.caller!, { phone, country }, { deterministic, ttlSeconds });
      } catch (error) {
        app.metrics.tokenizeItems.inc({ outcome: 'rejected' });
        throw error;
      }
      app.metrics.tokenizeItems.inc({ outcome: 'stored' });
      return reply.code(201).send({ ...tokenized, expiresAt: tokenized.expiresAt?.toISOString() ?? null });
    },
  );

  app.post(
    '/v1/tokenize/batch',
    {
      onRequest: guard,
      config: { audit: 'tokenize' },
      schema: {
        summary: 'Tokenize up to BATCH_MAX phone numbers; every valid one is stored, or none',
        tags: ['tokens'],
        security: bearerSecurity,
        body: z.strictObject({
          items: z.array(z.strictObject({ phone: phoneField, country: countryField.optional() })).min(1).max(batchMax),
          deterministic: z.boolean().default(false),
          ttlSeconds: ttlField.optional(),
        }),
        response: {
          200: z.object({
            results: z.array(
              z.union([
                z.object({ index: z.int(), token: z.string(), country: z.string().nullable(), lineType: lineTypeField }),
                z.object({ index: z.int(), error: itemErrorSchema }),
              ]),
            ),
          }),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const { items, deterministic, ttlSeconds } = request.body;
      reply.itemCount = items.length;
      const outcomes = await vault.tokenizeBatch(request.caller!, items, { deterministic, ttlSeconds });
      const rejected = outcomes.filter((outcome) => 'error' in outcome).length;
      app.metrics.tokenizeItems.inc({ outcome: 'stored' }, outcomes.length - rejected);
      app.metrics.tokenizeItems.inc({ outcome: 'rejected' }, rejected);
      return {
        results: outcomes.map((outcome) =>
          'error' in outcome
            ? outcome
            : { index: outcome.index, token: outcome.tokenized.token, country: outcome.tokenized.country, lineType: outcome.tokenized.lineType },
        ),
      };
    },
  );
}
