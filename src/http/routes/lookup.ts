import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Vault } from '../../vault/vault.js';
import { bearerSecurity, countryField, lineTypeField, phoneField, timestamp, tokenField, type SchemaRegistry } from '../schemas.js';

const LOOKUP_DEFAULT = 100;
const LOOKUP_MAX = 1_000;

export default async function lookupRoutes(fastify: FastifyInstance, { vault, schemas }: { vault: Vault; schemas: SchemaRegistry }) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.post(
    '/v1/lookup',
    {
      onRequest: app.guard('lookup', 'lookup'),
      config: { audit: 'lookup' },
      schema: {
        operationId: 'lookup',
        summary: "The tokens of a number in the caller's tenant, without any number",
        tags: ['tokens'],
        security: bearerSecurity,
        body: schemas.named(
          'Lookup',
          z.strictObject({
            phone: phoneField,
            country: countryField.optional(),
            limit: z.int().min(1).max(LOOKUP_MAX).default(LOOKUP_DEFAULT).describe('Tokens per page'),
            cursor: z.string().max(64).optional().describe("The previous page's `next`"),
          }),
        ),
        response: {
          200: schemas.named('TokenPage', z.object({ tokens: z.array(z.string()), next: z.string().nullable().describe('The cursor of the next page; null on the last') }), 'A page of the tokens of the number, never the number'),
          ...schemas.problems('lookup', ['invalid_phone', 'invalid_country'], { body: true }),
        },
      },
    },
    async (request, reply) => {
      const { phone, country, limit, cursor } = request.body;
      const page = await vault.lookup(request.caller!, { phone, country }, { limit, cursor });
      reply.itemCount = page.tokens.length;
      return page;
    },
  );

  app.get(
    '/v1/tokens/:token',
    {
      onRequest: app.guard('lookup', 'detokenize', 'detokenize:masked', 'lookup'),
      config: { audit: 'metadata' },
      schema: {
        operationId: 'getToken',
        summary: "A token's metadata; never its number",
        tags: ['tokens'],
        security: bearerSecurity,
        params: z.object({ token: tokenField }),
        response: {
          200: schemas.named(
            'TokenMetadata',
            z.object({ token: z.string(), country: z.string().nullable(), lineType: lineTypeField, deterministic: z.boolean(), createdAt: timestamp, expiresAt: timestamp.nullable() }),
            "The token's metadata; never its number",
          ),
          ...schemas.problems('getToken', ['not_found']),
        },
      },
    },
    async (request, reply) => {
      reply.itemCount = 1;
      const metadata = await vault.tokenMetadata(request.caller!, request.params.token);
      return { ...metadata, createdAt: metadata.createdAt.toISOString(), expiresAt: metadata.expiresAt?.toISOString() ?? null };
    },
  );
}
