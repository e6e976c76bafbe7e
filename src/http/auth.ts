import fastifyJwt from '@fastify/jwt';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { JwtConfig } from '../config/index.js';
import { isVaultError, VaultError } from '../errors.js';
import { isValidClient, isValidTenant, parseScopes, type Identity, type Scope } from '../identity.js';
import { API_KEY_PREFIX } from '../crypto/api-key.js';
import type { ApiKeyVerifier } from '../vault/api-keys.js';
import { createIdentityCache } from './identity-cache.js';
import { createJwksKeys } from './jwks.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Verifies the bearer credential if any; never answers, so that throttling can key on the result. */
    identify: (request: FastifyRequest) => Promise<void>;
    /** Answers 401 (or 503 while the issuer's keys are out of reach) unless identify succeeded. */
    requireIdentity: (request: FastifyRequest, reply: FastifyReply) => void;
    /** Answers 403 unless the identity holds at least one of the scopes. */
    requireScope: (request: FastifyRequest, reply: FastifyReply, anyOf: Scope[]) => void;
  }
}

const REALM = 'Bearer realm="phonevault"';
/** Larger than any identity provider's access token; a longer header is refused unread. */
export const MAX_CREDENTIAL_LENGTH = 8_192;
const BEARER = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/i;
// Any credential with the API keys' prefix is one (parseApiKey then checks its shape), never tried as a JWT.
const BEARER_API_KEY = new RegExp(`^Bearer (${API_KEY_PREFIX}[0-9A-Za-z]{1,100})$`, 'i');

/** The 403 of RFC 6750: the challenge names the scopes that would do; the caller throws the error returned. */
export function insufficientScope(reply: FastifyReply, anyOf: Scope[], detail: string): VaultError {
  reply.header('www-authenticate', `${REALM}, error="insufficient_scope", scope="${anyOf.join(' ')}"`);
  return new VaultError('insufficient_scope', detail);
}

/**
 * The token of an `Authorization: Bearer` header, or null. Only the canonical base64url spelling of each part
 * is taken (no padding, unused low bits zero): every token then has exactly one accepted text, which is what the
 * verified-identity cache is keyed by.
 */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined || header.length > MAX_CREDENTIAL_LENGTH) return null;
  const match = BEARER.exec(header);
  if (!match) return null;
  for (const part of match.slice(1)) if (Buffer.from(part, 'base64url').toString('base64url') !== part) return null;
  return `${match[1]}.${match[2]}.${match[3]}`;
}

interface Claims {
  exp?: unknown;
  iat?: unknown;
  sub?: unknown;
  tenant?: unknown;
  scope?: unknown;
}

/** The identity a verified token names, with every string claim checked as data and its times within bounds. */
function identityOf(claims: Claims, jwt: JwtConfig): { identity: Identity; expiresAt: number } | null {
  const { exp, iat, sub, tenant } = claims;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return null;
  const now = Date.now();
  // Without `iat` nothing bounds a token's life: one minted for a year would pass in its last day.
  if (typeof iat !== 'number' || !Number.isFinite(iat) || iat * 1000 > now + jwt.clockLeewayMs) return null;
  // A token that lives longer than the vault accepts is refused, however it was issued.
  if (exp * 1000 - iat * 1000 > jwt.maxLifetimeMs + jwt.clockLeewayMs) return null;
  const scopes = parseScopes(claims.scope);
  if (!isValidTenant(tenant) || !isValidClient(sub) || !scopes) return null;
  return { identity: { tenant, client: sub, scopes }, expiresAt: exp * 1000 };
}

/** With `apiKeys` (null when API_KEYS=off), a `Bearer pvk_…` credential is an API key and never tried as a JWT. */
async function auth(app: FastifyInstance, options: { jwt: JwtConfig; apiKeys: ApiKeyVerifier | null }) {
  const { jwt, apiKeys } = options;
  const { verification } = jwt;
  const jwks = verification.kind === 'jwks' ? createJwksKeys({ url: verification.jwksUrl, ttlMs: verification.refreshMs, minRefreshMs: verification.minRefreshMs }) : null;
  let secret;
  if (verification.kind === 'secret') secret = verification.secret;
  else if (verification.kind === 'publicKey') secret = { public: verification.publicKey };
  else secret = { public: async (_request: FastifyRequest, token: { header: { kid?: unknown; alg?: unknown } }) => jwks!.keyFor(token.header) };
  await app.register(fastifyJwt, {
    secret: secret as never,
    decode: { complete: true },
    verify: {
      algorithms: jwt.algorithms,
      allowedIss: jwt.issuer,
      allowedAud: jwt.audience,
      requiredClaims: ['exp', 'iss', 'aud', 'sub', 'tenant'],
      clockTolerance: jwt.clockLeewayMs,
      complete: true,
    },
  });

  const verified = createIdentityCache({ maxBytes: 4 * 1024 * 1024, maxAgeMs: 5 * 60_000 });
  const stillTrusted = (kid: string) => jwks?.trusts(kid) ?? true;

  app.decorate('identify', async (request: FastifyRequest) => {
    const header = request.headers.authorization;
    if (header === undefined) return;
    const apiKey = BEARER_API_KEY.exec(header)?.[1];
    if (apiKey !== undefined) {
      if (!apiKeys) return;
      try {
        const identity = await apiKeys(apiKey);
        if (identity) request.identity = identity;
      } catch {
        // The key could not be read: as with a JWKS out of reach, a 503 rather than a 401 that would look final.
        request.identityUnavailable = true;
      }
      return;
    }
    const token = bearerToken(header);
    if (!token) return;
    const cached = verified.get(token, stillTrusted);
    if (cached) {
      request.identity = cached;
      return;
    }
    try {
      const decoded = (await request.jwtVerify({ extractToken: () => token } as never)) as unknown as { header: { kid?: unknown }; payload: Claims };
      const found = identityOf(decoded.payload, jwt);
      if (!found) return;
      request.identity = found.identity;
      verified.set(token, found.identity, found.expiresAt, jwks && typeof decoded.header.kid === 'string' ? decoded.header.kid : null);
    } catch (error) {
      // Any verification failure is the same 401; the reason never helps a caller and could help an attacker.
      if (isVaultError(error) && error.code === 'unavailable') request.identityUnavailable = true;
    }
  });

  app.decorate('requireIdentity', (request: FastifyRequest, reply: FastifyReply) => {
    if (request.identity) return;
    if (request.identityUnavailable) {
      reply.header('retry-after', '5');
      throw new VaultError('unavailable', 'the credential cannot be checked right now; retry shortly');
    }
    reply.header('www-authenticate', `${REALM}, error="invalid_token"`);
    throw new VaultError('unauthorized', 'a valid bearer token is required');
  });

  app.decorate('requireScope', (request: FastifyRequest, reply: FastifyReply, anyOf: Scope[]) => {
    if (anyOf.some((scope) => request.identity?.scopes.has(scope))) return;
    throw insufficientScope(reply, anyOf, `this call needs the scope ${anyOf.join(' or ')}`);
  });
}

export default fp(auth, { name: 'phonevault-auth', fastify: '5.x', dependencies: ['phonevault-request-state'] });
