import fastifyJwt from '@fastify/jwt';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { z } from 'zod';
import type { JwtConfig } from '../config.js';
import { isVaultError, VaultError } from '../errors.js';
import { createJwksKeys } from './jwks.js';

export const SCOPES = ['tokenize', 'detokenize', 'detokenize:masked', 'lookup', 'erase', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Identity {
  tenant: string;
  client: string;
  scopes: ReadonlySet<string>;
}

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity | null;
    /** Set when the token could not be checked because the issuer's keys are out of reach. */
    identityUnavailable: boolean;
  }
  interface FastifyInstance {
    /** onRequest: verifies the bearer token if any; never answers, so that throttling can key on the result. */
    identify: (request: FastifyRequest) => Promise<void>;
    /** onRequest: answers 401 unless identify succeeded. */
    requireIdentity: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    /** onRequest: answers 403 unless the identity holds at least one of the scopes. */
    requireScope: (...anyOf: Scope[]) => (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const claimsSchema = z.object({
  exp: z.number(),
  sub: z.string().min(1).max(128),
  tenant: z.string().regex(TENANT),
  scope: z.string().max(1024).default(''),
});

const REALM = 'Bearer realm="phonevault"';

/** The 403 of RFC 6750: the challenge names the scopes that would do; the caller throws the error returned. */
export function insufficientScope(reply: FastifyReply, anyOf: Scope[], detail: string): VaultError {
  reply.header('www-authenticate', `${REALM}, error="insufficient_scope", scope="${anyOf.join(' ')}"`);
  return new VaultError('insufficient_scope', detail);
}
const IDENTITY_CACHE_SIZE = 10_000;
const IDENTITY_CACHE_MAX_AGE_MS = 5 * 60_000;

/**
 * Tokens that verified, by their exact Authorization header, until the token's own `exp` (and at most five
 * minutes): a client sends the same JWT for many requests, and verifying it once is enough. Failures are never
 * cached. Insertion order makes the oldest entry the first to go when the cache is full.
 */
function createIdentityCache() {
  const entries = new Map<string, { identity: Identity; until: number }>();
  return {
    get(header: string): Identity | null {
      const entry = entries.get(header);
      if (!entry) return null;
      if (entry.until > Date.now()) return entry.identity;
      entries.delete(header);
      return null;
    },
    set(header: string, identity: Identity, expiresAt: number): void {
      if (entries.size >= IDENTITY_CACHE_SIZE) entries.delete(entries.keys().next().value!);
      entries.set(header, { identity, until: Math.min(expiresAt, Date.now() + IDENTITY_CACHE_MAX_AGE_MS) });
    },
  };
}

async function auth(app: FastifyInstance, options: { jwt: JwtConfig }) {
  const { jwt } = options;
  const { verification } = jwt;
  let secret;
  if (verification.kind === 'secret') secret = verification.secret;
  else if (verification.kind === 'publicKey') secret = { public: verification.publicKey };
  else {
    const jwks = createJwksKeys({ url: verification.jwksUrl });
    secret = { public: async (_request: FastifyRequest, token: { header: { kid?: unknown; alg?: unknown } }) => jwks.keyFor(token.header) };
  }
  await app.register(fastifyJwt, {
    secret: secret as never,
    decode: { complete: true },
    verify: {
      algorithms: jwt.algorithms,
      allowedIss: jwt.issuer,
      allowedAud: jwt.audience,
      requiredClaims: ['exp', 'iss', 'aud', 'sub', 'tenant'],
      clockTolerance: 5_000,
      complete: false,
    },
  });

  app.decorateRequest('identity', null);
  app.decorateRequest('identityUnavailable', false);

  const verified = createIdentityCache();

  app.decorate('identify', async (request: FastifyRequest) => {
    const header = request.headers.authorization;
    if (!header) return;
    const cached = verified.get(header);
    if (cached) {
      request.identity = cached;
      return;
    }
    try {
      const claims = claimsSchema.safeParse(await request.jwtVerify());
      if (!claims.success) return;
      request.identity = {
        tenant: claims.data.tenant,
        client: claims.data.sub,
        scopes: new Set(claims.data.scope.split(' ').filter(Boolean)),
      };
      verified.set(header, request.identity, claims.data.exp * 1000);
    } catch (error) {
      // Any verification failure is the same 401; the reason never helps a caller and could help an attacker.
      if (isVaultError(error) && error.code === 'unavailable') request.identityUnavailable = true;
    }
  });

  app.decorate('requireIdentity', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.identity) return;
    if (request.identityUnavailable) {
      reply.header('retry-after', '5');
      throw new VaultError('unavailable', 'the token issuer keys cannot be fetched; retry shortly');
    }
    reply.header('www-authenticate', `${REALM}, error="invalid_token"`);
    throw new VaultError('unauthorized', 'a valid bearer token is required');
  });

  app.decorate('requireScope', (...anyOf: Scope[]) => async (request: FastifyRequest, reply: FastifyReply) => {
    if (anyOf.some((scope) => request.identity?.scopes.has(scope))) return;
    throw insufficientScope(reply, anyOf, `this call needs the scope ${anyOf.join(' or ')}`);
  });
}

export default fp(auth, { name: 'phonevault-auth', fastify: '5.x' });
