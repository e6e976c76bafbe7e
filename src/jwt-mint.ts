import { createSigner } from 'fast-jwt';
import type { JwtSigningConfig } from './config/index.js';

/** Mints an HS256 JWT as the vault expects it; for development and tests, never a production issuer. */
export function mintJwt(jwt: JwtSigningConfig, claims: { tenant: string; sub: string; scope: string }, ttlSeconds: number): string {
  const sign = createSigner({ key: jwt.secret, algorithm: 'HS256', iss: jwt.issuer, aud: jwt.audience, expiresIn: ttlSeconds * 1000 });
  return sign(claims);
}
