import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Vault } from '../../vault/vault.js';
import { countryField, itemErrorSchema, lineTypeField, phoneField, ttlField } from '../schemas.js';

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
  const guard = [app.identify, app.throttle('tokenize'), app.requireIdentity, app.requireScope('tokenize')];

  app.post(
    '/v1/tokenize',
    {
      onRequest: guard,
      schema: {
        body: z.strictObject({ phone: phoneField, country: countryField.optional(), deterministic: z.boolean().default(false), ttlSeconds: ttlField.optional() }),
        response: { 201: tokenizedSchema },
      },
    },
    async (request, reply) => {
      const { phone, country, deterministic, ttlSeconds } = request.body;
      const tokenized = await vault.tokenize(request.identity!, { phone, country }, { deterministic, ttlSeconds });
      reply.itemCount = 1;
      return reply.code(201).send({ ...tokenized, expiresAt: tokenized.expiresAt?.toISOString() ?? null });
    },
  );

  app.post(
    '/v1/tokenize/batch',
    {
      onRequest: guard,
      schema: {
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
        },
      },
    },
    async (request, reply) => {
      const { items, deterministic, ttlSeconds } = request.body;
      const outcomes = await vault.tokenizeBatch(request.identity!, items, { deterministic, ttlSeconds });
      reply.itemCount = items.length;
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
