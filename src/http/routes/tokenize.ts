import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Vault } from '../../vault/vault.js';
import { bearerSecurity, countryField, formatField, IDEMPOTENT, idempotentHeaders, itemErrorSchema, lineTypeField, phoneField, REPLAYED_HEADER, timestamp, ttlField, type SchemaRegistry } from '../schemas.js';

export interface TokenizeRoutesOptions {
  vault: Vault;
  batchMax: number;
  schemas: SchemaRegistry;
}

const tokenizedSchema = z.object({
  token: z.string(),
  country: z.string().nullable(),
  lineType: lineTypeField,
  deterministic: z.boolean(),
  expiresAt: timestamp.nullable(),
});

// `opaque` is the default, said or not: a retry of a request made before `format` existed is the same request.
const shape = (format: 'opaque' | 'phone' | undefined) => (format === 'phone' ? format : undefined);

export default async function tokenizeRoutes(fastify: FastifyInstance, { vault, batchMax, schemas }: TokenizeRoutesOptions) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const guard = app.guard('tokenize', 'tokenize');
  const phoneItem = schemas.named('Phone', z.strictObject({ phone: phoneField, country: countryField.optional() }));

  app.post(
    '/v1/tokenize',
    {
      onRequest: guard,
      config: { audit: 'tokenize' },
      schema: {
        operationId: 'tokenize',
        summary: 'Tokenize one phone number',
        tags: ['tokens'],
        security: bearerSecurity,
        headers: idempotentHeaders,
        body: schemas.named(
          'Tokenize',
          z.strictObject({ phone: phoneField, country: countryField.optional(), deterministic: z.boolean().default(false), format: formatField.optional(), ttlSeconds: ttlField.optional() }),
        ),
        response: { 201: schemas.named('Tokenized', tokenizedSchema, 'The token, and what is known of its number'), ...schemas.problems('tokenize', ['invalid_phone', 'invalid_country', ...IDEMPOTENT], { body: true }) },
      },
    },
    async (request, reply) => {
      const { phone, country, deterministic, format, ttlSeconds } = request.body;
      const key = request.headers['idempotency-key'];
      reply.itemCount = 1;
      let tokenized;
      try {
        const input = { phone, country };
        const options = { deterministic, format: shape(format), ttlSeconds };
        tokenized = key ? await vault.tokenizeOnce(request.caller!, input, options, key) : { value: await vault.tokenize(request.caller!, input, options), replayed: false };
      } catch (error) {
        app.metrics.tokenizeItems.inc({ outcome: 'rejected' });
        throw error;
      }
      if (tokenized.replayed) reply.header(REPLAYED_HEADER, 'true');
      else app.metrics.tokenizeItems.inc({ outcome: 'stored' });
      return reply.code(201).send({ ...tokenized.value, expiresAt: tokenized.value.expiresAt?.toISOString() ?? null });
    },
  );

  app.post(
    '/v1/tokenize/batch',
    {
      onRequest: guard,
      config: { audit: 'tokenize' },
      schema: {
        operationId: 'tokenizeBatch',
        summary: 'Tokenize up to BATCH_MAX phone numbers; every valid one is stored, or none',
        tags: ['tokens'],
        security: bearerSecurity,
        headers: idempotentHeaders,
        body: schemas.named(
          'TokenizeBatch',
          z.strictObject({ items: z.array(phoneItem).min(1).max(batchMax), deterministic: z.boolean().default(false), format: formatField.optional(), ttlSeconds: ttlField.optional() }),
        ),
        response: {
          200: schemas.named(
            'TokenizeBatchResult',
            z.object({
              results: z.array(
                z.union([
                  schemas.named('TokenizedItem', z.object({ index: z.int(), token: z.string(), country: z.string().nullable(), lineType: lineTypeField })),
                  schemas.named('RejectedItem', z.object({ index: z.int(), error: itemErrorSchema })),
                ]),
              ),
            }),
            'One result per item, in order: its token, or why that item was refused',
          ),
          ...schemas.problems('tokenizeBatch', IDEMPOTENT, { body: true }),
        },
      },
    },
    async (request, reply) => {
      const { items, deterministic, format, ttlSeconds } = request.body;
      const key = request.headers['idempotency-key'];
      reply.itemCount = items.length;
      const options = { deterministic, format: shape(format), ttlSeconds };
      const { value: outcomes, replayed } = key ? await vault.tokenizeBatchOnce(request.caller!, items, options, key) : { value: await vault.tokenizeBatch(request.caller!, items, options), replayed: false };
      if (replayed) reply.header(REPLAYED_HEADER, 'true');
      else {
        const rejected = outcomes.filter((outcome) => 'error' in outcome).length;
        app.metrics.tokenizeItems.inc({ outcome: 'stored' }, outcomes.length - rejected);
        app.metrics.tokenizeItems.inc({ outcome: 'rejected' }, rejected);
      }
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
