import { createPublicKey } from 'node:crypto';
import { z } from 'zod';
import { secretWeakness } from './secret-strength.js';
import { duration, required } from './values.js';

export type JwtAlgorithm = 'HS256' | 'RS256' | 'ES256';
const ALGORITHMS = ['HS256', 'RS256', 'ES256'] as const;

/** Exactly one way to verify: an HS256 secret, a PEM public key, or a JWKS URL. */
export type JwtVerification =
  | { kind: 'secret'; secret: Buffer }
  | { kind: 'publicKey'; publicKey: string }
  /** Keys fetched from jwksUrl, trusted for refreshMs; the URL is fetched at most once per minRefreshMs. */
  | { kind: 'jwks'; jwksUrl: string; refreshMs: number; minRefreshMs: number };

export interface JwtConfig {
  verification: JwtVerification;
  algorithms: JwtAlgorithm[];
  issuer: string;
  audience: string;
  /** Tolerance for `exp`, `nbf` and `iat` against this machine's clock. */
  clockLeewayMs: number;
  /** Tokens that live longer than this (from `iat`, or from now without one) are refused. */
  maxLifetimeMs: number;
}

export interface JwtSigningConfig {
  secret: Buffer;
  issuer: string;
  audience: string;
}

export const jwtSecret = required.transform((text, ctx) => {
  const weakness = secretWeakness(text);
  if (weakness) ctx.addIssue({ code: 'custom', message: weakness });
  return Buffer.from(text, 'utf8');
});

const publicKeyPem = z.string().transform((text, ctx) => {
  try {
    const key = createPublicKey(text);
    if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      ctx.addIssue({ code: 'custom', message: 'an RSA key must have at least 2048 bits' });
    }
    return { pem: text, type: key.asymmetricKeyType };
  } catch {
    ctx.addIssue({ code: 'custom', message: 'is not a PEM public key' });
    return { pem: '', type: undefined };
  }
});

export const jwtVerificationShape = z
  .object({
    JWT_SECRET: z.string().optional(),
    JWT_PUBLIC_KEY: publicKeyPem.optional(),
    JWT_JWKS_URL: z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' }).optional(),
    JWT_JWKS_REFRESH: duration('5m', 30_000),
    JWT_ALGORITHMS: z
      .string()
      .transform((text) => text.split(',').map((part) => part.trim()).filter(Boolean))
      .pipe(z.array(z.enum(ALGORITHMS, { message: `may list only ${ALGORITHMS.join(', ')}` })).min(1))
      .optional(),
  })
  .transform((env, ctx): Pick<JwtConfig, 'verification' | 'algorithms'> => {
    const configured = [env.JWT_SECRET, env.JWT_PUBLIC_KEY, env.JWT_JWKS_URL].filter((value) => value !== undefined && value !== '');
    if (configured.length !== 1) {
      ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'set exactly one of JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL' });
      return z.NEVER;
    }
    let verification: JwtVerification;
    let derived: JwtAlgorithm[];
    if (env.JWT_SECRET) {
      const secret = jwtSecret.safeParse(env.JWT_SECRET);
      if (!secret.success) {
        for (const issue of secret.error.issues) ctx.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: issue.message });
        return z.NEVER;
      }
      verification = { kind: 'secret', secret: secret.data };
      derived = ['HS256'];
    } else if (env.JWT_PUBLIC_KEY) {
      verification = { kind: 'publicKey', publicKey: env.JWT_PUBLIC_KEY.pem };
      derived = env.JWT_PUBLIC_KEY.type === 'ec' ? ['ES256'] : ['RS256'];
    } else {
      verification = { kind: 'jwks', jwksUrl: env.JWT_JWKS_URL!, refreshMs: env.JWT_JWKS_REFRESH, minRefreshMs: 30_000 };
      derived = ['RS256', 'ES256'];
    }
    const algorithms = env.JWT_ALGORITHMS ?? derived;
    // An HMAC algorithm next to a public key is the algorithm-confusion attack waiting to happen.
    const symmetric = verification.kind === 'secret';
    if (algorithms.some((alg) => alg.startsWith('HS') !== symmetric)) {
      ctx.addIssue({ code: 'custom', path: ['JWT_ALGORITHMS'], message: symmetric ? 'only HS256 goes with JWT_SECRET' : 'HS256 cannot be used with a public key or JWKS' });
      return z.NEVER;
    }
    return { verification, algorithms };
  });

/** What a JWT must say besides its signature, parsed apart from the key so that every missing one is named. */
export const jwtClaimsShape = {
  JWT_ISSUER: required,
  JWT_AUDIENCE: required,
  JWT_CLOCK_LEEWAY: duration('5s'),
  JWT_MAX_LIFETIME: duration('24h', 1_000),
};

export const jwtSigningShape = z.object({ JWT_SECRET: jwtSecret, JWT_ISSUER: required, JWT_AUDIENCE: required });
