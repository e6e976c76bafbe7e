import type { SwaggerTransform, SwaggerTransformObject } from '@fastify/swagger';
import { createJsonSchemaTransform, createJsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { SchemaRegistry } from './schemas.js';

/** The static part of the OpenAPI description; paths and schemas come from the routes' own zod schemas. */
export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'phonevault',
    version: '1',
    description:
      'A tokenization vault for phone numbers. Errors are RFC 9457 application/problem+json bodies with a stable `code`.',
    license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
  },
  servers: [{ url: 'http://127.0.0.1:8080', description: 'A vault on this machine (`npm start`, or `phonevault serve`)' }],
  tags: [
    { name: 'tokens', description: 'Tokenize and detokenize phone numbers' },
    { name: 'erasure', description: 'Delete tokens and numbers' },
    { name: 'keys', description: "Data key rotation and destruction for the caller's tenant" },
    { name: 'api-keys', description: "API keys for the caller's tenant, for services that cannot mint JWTs" },
    { name: 'audit', description: "The caller's tenant's append-only, hash-chained audit trail" },
    { name: 'operations', description: 'Liveness and readiness' },
  ],
  components: {
    securitySchemes: {
      bearer: {
        type: 'http' as const,
        scheme: 'bearer',
        bearerFormat: 'JWT or pvk_ API key',
        description: 'A JWT with exp, iat, iss, aud, sub, tenant and a space-separated scope claim, or an API key (`pvk_…`, from POST /v1/api-keys or `phonevault apikey create`)',
      },
    },
  },
};

type Transformed = ReturnType<SwaggerTransform>;

/**
 * The type provider's transforms over one app's registry, so that named schemas become components. Its route
 * transform keeps a response's description and content only: the headers a response declares (retry-after) are
 * put back, and a named answer's own description becomes its response's.
 */
export function openapiTransforms(registry: SchemaRegistry['registry']): { transform: SwaggerTransform; transformObject: SwaggerTransformObject } {
  const transform = createJsonSchemaTransform({ schemaRegistry: registry });
  const transformObject = createJsonSchemaTransformObject({ schemaRegistry: registry });
  return {
    transform(document) {
      const transformed: Transformed = transform(document);
      const declared = (document.schema as { response?: Record<string, { headers?: unknown }> } | undefined)?.response ?? {};
      const responses = (transformed.schema as { response?: Record<string, Record<string, unknown>> } | undefined)?.response;
      for (const [status, response] of Object.entries(declared)) {
        const out = responses?.[status];
        if (!out) continue;
        if (response?.headers) out.headers = response.headers;
        const description = response instanceof z.ZodType ? registry.get(response)?.description : undefined;
        if (description) out.description = description;
      }
      return transformed;
    },
    transformObject: (document) => withoutUnused(transformObject(document)),
  };
}

type Document = ReturnType<SwaggerTransformObject>;

/**
 * The document with only the schemas something refers to: the type provider emits every named schema twice, as
 * input and as output, and a schema only ever sent or only ever received has one of the two unused.
 */
function withoutUnused(document: Document): Document {
  const schemas = (document as { components?: { schemas?: Record<string, unknown> } }).components?.schemas;
  if (!schemas) return document;
  const used = new Set<string>();
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(visit);
    else if (value && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) {
        const id = key === '$ref' && typeof child === 'string' ? /^#\/components\/schemas\/(.+)$/.exec(child)?.[1] : undefined;
        if (id !== undefined && !used.has(id)) {
          used.add(id);
          visit(schemas[id]);
        } else visit(child);
      }
    }
  };
  visit((document as { paths?: unknown }).paths);
  for (const id of Object.keys(schemas)) if (!used.has(id)) delete schemas[id];
  return document;
}
