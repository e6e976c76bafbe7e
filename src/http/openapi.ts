/** The static part of the OpenAPI description; paths and schemas come from the routes' own zod schemas. */
export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'phonevault',
    version: '1',
    description:
      'A tokenization vault for phone numbers. Errors are RFC 9457 application/problem+json bodies with a stable `code`.',
  },
  tags: [
    { name: 'tokens', description: 'Tokenize and detokenize phone numbers' },
    { name: 'erasure', description: 'Delete tokens and numbers' },
    { name: 'keys', description: "Data key rotation and destruction for the caller's tenant" },
    { name: 'audit', description: "The caller's tenant's append-only, hash-chained audit trail" },
    { name: 'operations', description: 'Liveness and readiness' },
  ],
  components: {
    securitySchemes: {
      bearer: {
        type: 'http' as const,
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description: 'A JWT with exp, iss, aud, sub, tenant and a space-separated scope claim',
      },
    },
  },
};
