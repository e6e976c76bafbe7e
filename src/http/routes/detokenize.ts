import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Vault } from '../../vault/vault.js';
import { insufficientScope } from '../auth.js';
import { bearerSecurity, tokenField, type SchemaRegistry } from '../schemas.js';

export interface DetokenizeRoutesOptions {
  vault: Vault;
  batchMax: number;
  schemas: SchemaRegistry;
}

export default async function detokenizeRoutes(fastify: FastifyInstance, { vault, batchMax, schemas }: DetokenizeRoutesOptions) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.post(
    '/v1/detokenize',
    {
      onRequest: app.guard('detokenize', 'detokenize', 'detokenize:masked'),
      config: { audit: 'detokenize' },
      schema: {
        operationId: 'detokenize',
        summary: 'Turn tokens back into numbers (plain with detokenize, masked with detokenize:masked)',
        tags: ['tokens'],
        security: bearerSecurity,
        body: schemas.named(
          'Detokenize',
          z.strictObject({
            tokens: z.array(tokenField).min(1).max(batchMax),
            redaction: z.enum(['plain', 'masked']).optional().describe('plain by default with the detokenize scope, masked without it'),
          }),
        ),
        response: {
          200: schemas.named(
            'Detokenized',
            z.object({
              results: z.array(
                z.union([
                  schemas.named('PlainNumber', z.object({ token: z.string(), phone: z.string().describe('E.164'), country: z.string().nullable() })),
                  schemas.named('MaskedNumber', z.object({ token: z.string(), masked: z.string(), country: z.string().nullable() })),
                  schemas.named(
                    'UnreadToken',
                    z.object({
                      token: z.string(),
                      error: z.object({ code: z.enum(['not_found', 'unreadable']).describe('unreadable: its row was tampered with (logged); not_found: anything else') }),
                    }),
                  ),
                ]),
              ),
            }),
            'One result per token, in order: its number (plain or masked), or why there is none',
          ),
          ...schemas.problems('detokenize', [], { body: true }),
        },
      },
    },
    async (request, reply) => {
      const identity = request.identity!;
      const mayReadPlain = identity.scopes.has('detokenize');
      const redaction = request.body.redaction ?? (mayReadPlain ? 'plain' : 'masked');
      if (redaction === 'plain' && !mayReadPlain) {
        throw insufficientScope(reply, ['detokenize'], 'plain numbers need the scope detokenize; ask for redaction "masked"');
      }
      reply.itemCount = request.body.tokens.length;
      reply.auditAction = redaction === 'masked' ? 'detokenize_masked' : 'detokenize';
      await app.spendDetokenizeItems(request, reply, request.body.tokens.length);
      const results = await vault.detokenize(request.caller!, request.body.tokens, redaction);
      // Counted here, then one increment per outcome: a labelled increment per item shows in a batch's time.
      const outcomes = { plain: 0, masked: 0, not_found: 0, unreadable: 0 };
      for (const result of results) outcomes['error' in result ? result.error.code : redaction]++;
      for (const [outcome, count] of Object.entries(outcomes)) if (count > 0) app.metrics.detokenizeItems.inc({ outcome }, count);
      if (outcomes.unreadable > 0) app.metrics.decryptionFailures.inc(outcomes.unreadable);
      return { results };
    },
  );
}
