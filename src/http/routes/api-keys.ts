import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { SCOPES } from '../../identity.js';
import type { ApiKeyInfo } from '../../store/api-keys.js';
import type { Vault } from '../../vault/vault.js';
import { bearerSecurity, timestamp, type SchemaRegistry } from '../schemas.js';

const apiKeyId = z.string().regex(/^[0-9a-f]{16}$/).describe("The key's public id (not a secret)");

const apiKeySchema = z.object({
  id: apiKeyId,
  name: z.string().describe("The client name the key's calls are throttled and audited under"),
  scopes: z.array(z.enum(SCOPES)),
  createdBy: z.string().describe('The client that made it (`cli` from the command line)'),
  createdAt: timestamp,
  expiresAt: timestamp.nullable(),
  revokedAt: timestamp.nullable(),
  lastUsedAt: timestamp.nullable().describe('Coarse: noted at most once an hour'),
});

const answer = (key: ApiKeyInfo) => ({
  id: key.id,
  name: key.name,
  scopes: key.scopes as (typeof SCOPES)[number][],
  createdBy: key.createdBy,
  createdAt: key.createdAt.toISOString(),
  expiresAt: key.expiresAt?.toISOString() ?? null,
  revokedAt: key.revokedAt?.toISOString() ?? null,
  lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
});

export default async function apiKeyRoutes(fastify: FastifyInstance, { vault, schemas }: { vault: Vault; schemas: SchemaRegistry }) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const guard = app.guard('admin', 'admin');
  const ApiKey = schemas.named('ApiKey', apiKeySchema);

  app.post(
    '/v1/api-keys',
    {
      onRequest: guard,
      config: { audit: 'apikey_create' },
      schema: {
        operationId: 'createApiKey',
        summary: "Make an API key for the caller's tenant; its text is in this answer only",
        description: 'A key can be given only scopes its creator holds.',
        tags: ['api-keys'],
        security: bearerSecurity,
        body: schemas.named(
          'NewApiKey',
          z.strictObject({
            name: z.string().min(1).max(128).describe('The calling service, as its client name'),
            scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
            expiresAt: timestamp.optional().describe('When it stops working; never, if absent'),
          }),
        ),
        response: {
          201: schemas.named('CreatedApiKey', apiKeySchema.extend({ key: z.string().regex(/^pvk_[0-9A-Za-z]{60}$/).describe('The key: shown once, never stored') }), 'Made'),
          ...schemas.problems('createApiKey', ['invalid_request'], { body: true }),
        },
      },
    },
    async (request, reply) => {
      const { name, scopes, expiresAt } = request.body;
      const made = await vault.createApiKey(request.caller!, { name, scopes, expiresAt: expiresAt ? new Date(expiresAt) : null }, request.identity!.scopes);
      reply.itemCount = 1;
      return reply.code(201).send({ ...answer(made), key: made.key });
    },
  );

  app.get(
    '/v1/api-keys',
    {
      onRequest: guard,
      config: { audit: 'apikey_list' },
      schema: {
        operationId: 'listApiKeys',
        summary: "The caller's tenant's API keys, revoked and expired ones included",
        tags: ['api-keys'],
        security: bearerSecurity,
        querystring: z.strictObject({
          after: apiKeyId.optional().describe("Only keys after this id (the previous page's `next`)"),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: {
          200: schemas.named('ApiKeyPage', z.object({ keys: z.array(ApiKey), next: apiKeyId.nullable() }), "A page of the tenant's API keys"),
          ...schemas.problems('listApiKeys', []),
        },
      },
    },
    async (request, reply) => {
      const page = await vault.listApiKeys(request.caller!, { after: request.query.after ?? '', limit: request.query.limit });
      reply.itemCount = page.keys.length;
      return { keys: page.keys.map(answer), next: page.next };
    },
  );

  app.delete(
    '/v1/api-keys/:id',
    {
      onRequest: guard,
      config: { audit: 'apikey_revoke' },
      schema: {
        operationId: 'revokeApiKey',
        summary: 'Revoke an API key: every instance refuses it within 5 seconds',
        tags: ['api-keys'],
        security: bearerSecurity,
        params: z.object({ id: apiKeyId }),
        response: { 204: z.null().describe('Revoked'), ...schemas.problems('revokeApiKey', ['not_found'], { body: true }) },
      },
    },
    async (request, reply) => {
      reply.itemCount = 1;
      await vault.revokeApiKey(request.caller!, request.params.id);
      return reply.code(204).send(null);
    },
  );
}
