import type { Identity } from '../identity.js';

interface Entry {
  identity: Identity;
  until: number;
  /** The JWKS key that verified it, re-checked on every hit so that a key removed from the set stops at once. */
  kid: string | null;
  bytes: number;
}

// A fixed allowance per entry for the identity object, its strings and the Map's own slot.
const ENTRY_OVERHEAD = 256;

/**
 * Credentials that verified, by their canonical text (the token alone, however `Bearer` was spelled; a token with
 * another spelling of its base64url never verifies), until the credential's own expiry and at most `maxAgeMs`.
 * Bounded in bytes, so that a flood of distinct valid tokens, each as large as accepted, costs a bounded amount
 * of memory: the oldest entries go first. Failures are never cached.
 */
export function createIdentityCache(options: { maxBytes: number; maxAgeMs: number }) {
  const entries = new Map<string, Entry>();
  let bytes = 0;

  const drop = (token: string, entry: Entry) => {
    entries.delete(token);
    bytes -= entry.bytes;
  };

  return {
    get(token: string, stillTrusted: (kid: string) => boolean): Identity | null {
      const entry = entries.get(token);
      if (!entry) return null;
      if (entry.until > Date.now() && (entry.kid === null || stillTrusted(entry.kid))) return entry.identity;
      drop(token, entry);
      return null;
    },

    set(token: string, identity: Identity, expiresAt: number, kid: string | null): void {
      const previous = entries.get(token);
      if (previous) drop(token, previous);
      let text = token.length + identity.tenant.length + identity.client.length;
      for (const scope of identity.scopes) text += scope.length;
      // Two bytes a character at most, as V8 keeps strings.
      const entry = { identity, until: Math.min(expiresAt, Date.now() + options.maxAgeMs), kid, bytes: ENTRY_OVERHEAD + 2 * text };
      // Insertion order makes the oldest entry the first to go.
      for (const [oldest, old] of entries) {
        if (bytes + entry.bytes <= options.maxBytes) break;
        drop(oldest, old);
      }
      entries.set(token, entry);
      bytes += entry.bytes;
    },

    get bytes(): number {
      return bytes;
    },
  };
}
