import { createPublicKey } from 'node:crypto';
import { VaultError } from '../errors.js';

export interface JwksOptions {
  url: string;
  /** How long a fetched key set is trusted; a key removed from the set stops verifying within this time. */
  ttlMs?: number;
  /** The endpoint is fetched at most this often, whatever it answered: a flood of bogus kids is not a DoS. */
  minRefreshMs?: number;
  fetchTimeoutMs?: number;
}

interface Jwk {
  kid?: string;
  kty?: string;
  use?: string;
  alg?: string;
  [field: string]: unknown;
}

const KTY_FOR_ALG: Record<string, string> = { RS256: 'RSA', ES256: 'EC' };

/**
 * Public keys from one configured JWKS URL, looked up by the token's `kid`. Headers that name other key
 * locations (`jku`, `x5u`, `jwk`) are never followed: the URL is configuration, not input.
 */
export function createJwksKeys(options: JwksOptions) {
  const ttlMs = options.ttlMs ?? 5 * 60_000;
  const minRefreshMs = options.minRefreshMs ?? 30_000;
  const fetchTimeoutMs = options.fetchTimeoutMs ?? 2_000;
  let keys = new Map<string, { key: string; kty: string; alg?: string }>();
  let fetchedAt = 0;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  let inFlight: Promise<void> | null = null;

  async function refresh(): Promise<void> {
    const response = await fetch(options.url, { signal: AbortSignal.timeout(fetchTimeoutMs), redirect: 'error' });
    if (!response.ok) throw new Error(`JWKS answered ${response.status}`);
    const body = (await response.json()) as { keys?: Jwk[] };
    const next = new Map<string, { key: string; kty: string; alg?: string }>();
    for (const jwk of Array.isArray(body.keys) ? body.keys : []) {
      if (typeof jwk.kid !== 'string' || (jwk.use && jwk.use !== 'sig') || (jwk.kty !== 'RSA' && jwk.kty !== 'EC')) continue;
      try {
        // Only the public members: a JWKS that leaks a private key must not turn into signing material here.
        const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = jwk;
        const key = createPublicKey({ key: publicJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
        next.set(jwk.kid, { key, kty: jwk.kty, ...(typeof jwk.alg === 'string' ? { alg: jwk.alg } : {}) });
      } catch {
        // An unusable key is skipped; the others still serve.
      }
    }
    keys = next;
    fetchedAt = Date.now();
  }

  /** Fetches the set again unless an attempt, failed or not, was made in the last `minRefreshMs`. */
  async function refreshIfDue(): Promise<void> {
    if (inFlight) return inFlight;
    if (Date.now() - attemptedAt < minRefreshMs) return;
    attemptedAt = Date.now();
    inFlight = refresh().finally(() => {
      inFlight = null;
    });
    return inFlight;
  }

  const fresh = () => Date.now() - fetchedAt <= ttlMs;

  return {
    /** The key for a token header; throws VaultError('unavailable') when the JWKS cannot be had at all. */
    async keyFor(header: { kid?: unknown; alg?: unknown }): Promise<string> {
      if (typeof header.kid !== 'string' || typeof header.alg !== 'string') throw new Error('token has no kid');
      if (!fresh() || !keys.has(header.kid)) {
        try {
          await refreshIfDue();
        } catch {
          // Keep serving with the keys we have; with none at all, the vault cannot verify anyone.
          if (keys.size === 0) throw new VaultError('unavailable', 'the token issuer keys cannot be fetched; retry shortly');
        }
        if (keys.size === 0 && fetchedAt === 0) throw new VaultError('unavailable', 'the token issuer keys cannot be fetched; retry shortly');
      }
      const entry = keys.get(header.kid);
      if (!entry) throw new Error('unknown kid');
      if (KTY_FOR_ALG[header.alg] !== entry.kty || (entry.alg && entry.alg !== header.alg)) throw new Error('kid does not match alg');
      return entry.key;
    },

    /**
     * Whether a verification made with `kid` still stands: the set it came from is fresh and still holds it. A
     * stale set sends the next request through a full verification, which fetches the set again.
     */
    trusts(kid: string): boolean {
      return fresh() && keys.has(kid);
    },
  };
}
