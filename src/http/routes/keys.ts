import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DATA_KEY_STATES } from '../../crypto/keyring.js';
import type { Vault } from '../../vault/vault.js';
import { bearerSecurity, timestamp, type SchemaRegistry } from '../schemas.js';

const keyVersionSchema = z.object({
  version: z.int(),
  state: z.enum(DATA_KEY_STATES),
  encryptions: z.int().describe('Encryptions counted against this version (an upper bound)'),
  tokens: z.int().describe('Tokens this version still protects'),
  createdAt: timestamp,
  retiredAt: timestamp.nullable(),
  destroyedAt: timestamp.nullable(),
  kek: z
    .object({
      id: z.string().describe('The key-encryption key’s id, as configured'),
      provider: z.enum(['env', 'pkcs11', 'awskms']).nullable().describe('Where it lives; null when this instance does not have it configured'),
    })
    .nullable()
    .describe('The key-encryption key that wraps this version (never its material); null once destroyed'),
});

export default async function keysRoutes(fastify: FastifyInstance, { vault, schemas }: { vault: Vault; schemas: SchemaRegistry }) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const guard = app.guard('admin', 'admin');

  app.get(
    '/v1/keys',
    {
      onRequest: guard,
      config: { audit: 'keys_list' },
      schema: {
        operationId: 'listKeys',
        summary: "The caller's tenant's data key versions, their state, use and tokens",
        tags: ['keys'],
        security: bearerSecurity,
        querystring: z.strictObject({
          after: z.coerce.number().int().min(0).max(2 ** 31 - 1).default(0).describe("Only versions after this one (the previous page's `next`)"),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: {
          200: schemas.named('KeyPage', z.object({ keys: z.array(schemas.named('KeyVersion', keyVersionSchema)), next: z.int().nullable() }), "A page of the tenant's data key versions"),
          ...schemas.problems('listKeys', []),
        },
      },
    },
    async (request, reply) => {
      const page = await vault.listKeys(request.caller!, { afterVersion: request.query.after, limit: request.query.limit });
      reply.itemCount = page.keys.length;
      return {
        keys: page.keys.map((key) => ({
          ...key,
          createdAt: key.createdAt.toISOString(),
          retiredAt: key.retiredAt?.toISOString() ?? null,
          destroyedAt: key.destroyedAt?.toISOString() ?? null,
        })),
        next: page.next,
      };
    },
  );

  app.post(
    '/v1/keys/rotate',
    {
      onRequest: guard,
      config: { audit: 'keys_rotate' },
      schema: {
        operationId: 'rotateKey',
        summary: "Rotate the caller's tenant's data key: new writes use the new version at once",
        tags: ['keys'],
        security: bearerSecurity,
        response: { 200: schemas.named('RotatedKey', z.object({ activeVersion: z.int() }), 'New writes use this version from now on'), ...schemas.problems('rotateKey', [], { body: true }) },
      },
    },
    async (request) => ({ activeVersion: await vault.rotateKey(request.caller!) }),
  );

  app.post(
    '/v1/keys/:version/destroy',
    {
      onRequest: guard,
      config: { audit: 'keys_destroy' },
      schema: {
        operationId: 'destroyKeyVersion',
        summary: 'Destroy a retired version that no token uses any more; it can never decrypt again',
        tags: ['keys'],
        security: bearerSecurity,
        params: z.object({ version: z.coerce.number().int().min(1).max(2 ** 31 - 1) }),
        response: { 204: z.null().describe('Destroyed'), ...schemas.problems('destroyKeyVersion', ['not_found'], { body: true }) },
      },
    },
    async (request, reply) => {
      await vault.destroyKeyVersion(request.caller!, request.params.version);
      return reply.code(204).send(null);
    },
  );
}
