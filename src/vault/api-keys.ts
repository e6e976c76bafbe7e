import type { Logger } from 'pino';
import { apiKeyMatches, generateApiKey, hashApiKey, parseApiKey } from '../crypto/api-key.js';
import { VaultError } from '../errors.js';
import { isValidClient, isValidTenant, SCOPES, type Identity } from '../identity.js';
import { safeErrorFields } from '../logger.js';
import type { ApiKeyInfo, ApiKeyRow, ApiKeysStore } from '../store/api-keys.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';

export interface NewApiKey {
  name: string;
  scopes: string[];
  expiresAt: Date | null;
}

/** A key as made: its text, shown this once and never again, and what is kept of it. */
export interface CreatedApiKey extends ApiKeyInfo {
  key: string;
}

/**
 * Makes a key for the caller's tenant. A caller can give a key only scopes it holds itself (`grantable`; the
 * command line, run by the operator, may grant any), so that `admin` alone cannot mint a key that detokenizes.
 */
export async function createApiKey(deps: VaultDeps, caller: Caller, request: NewApiKey, grantable: ReadonlySet<string> | 'any'): Promise<CreatedApiKey> {
  if (!isValidTenant(caller.tenant)) throw new VaultError('invalid_request', 'tenant: 1-64 of letters, digits and ._- that is not a phone number');
  if (!isValidClient(request.name)) throw new VaultError('invalid_request', 'name: 1-128 of letters, digits and ._~:@|/+=- that is not a phone number');
  const scopes = [...new Set(request.scopes)];
  if (scopes.length === 0 || !scopes.every((scope) => (SCOPES as readonly string[]).includes(scope))) {
    throw new VaultError('invalid_request', `scopes: one or more of ${SCOPES.join(', ')}`);
  }
  if (grantable !== 'any' && !scopes.every((scope) => grantable.has(scope))) throw new VaultError('insufficient_scope', 'a key can be given only scopes its creator holds');
  if (request.expiresAt && request.expiresAt.getTime() <= Date.now()) throw new VaultError('invalid_request', 'expiresAt: must be in the future');
  const made = generateApiKey();
  const info = await deps.auditLog.commit(caller.tenant, async (tx) => ({
    value: await deps.apiKeys.insert(tx, {
      id: made.id,
      tenant: caller.tenant,
      name: request.name,
      scopes,
      keyHash: hashApiKey(deps.apiKeyHashKey, made),
      createdBy: caller.client,
      expiresAt: request.expiresAt,
    }),
    events: [eventOf(caller, 'apikey_create', 1)],
  }));
  return { ...info, key: made.text };
}

export interface ApiKeysPage {
  keys: ApiKeyInfo[];
  next: string | null;
}

const pageOf = (rows: ApiKeyInfo[], limit: number): ApiKeysPage => {
  const keys = rows.slice(0, limit);
  return { keys, next: rows.length > limit ? keys.at(-1)!.id : null };
};

/** A page of the tenant's keys, revoked and expired ones included. */
export async function listApiKeys(deps: VaultDeps, caller: Caller, page: { after: string; limit: number }): Promise<ApiKeysPage> {
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    const value = pageOf(await deps.apiKeys.list(tx, { tenant: caller.tenant, after: page.after, limit: page.limit + 1 }), page.limit);
    return { value, events: [eventOf(caller, 'apikey_list', value.keys.length)] };
  });
}

/** Every tenant's keys, for the operator at the command line: metadata only, like `audit verify`'s reads. */
export async function listAllApiKeys(deps: VaultDeps, page: { after: string; limit: number }): Promise<ApiKeysPage> {
  return pageOf(await deps.apiKeys.list(deps.db, { tenant: null, after: page.after, limit: page.limit + 1 }), page.limit);
}

/** The command line's revocation by id alone: the key's own tenant records it. */
export async function revokeApiKeyById(deps: VaultDeps, caller: (tenant: string) => Caller, id: string): Promise<ApiKeyInfo> {
  const key = await deps.apiKeys.find(id);
  if (!key) throw new VaultError('not_found', 'no API key with this id');
  return revokeApiKey(deps, caller(key.tenant), id);
}

/** Revokes one of the tenant's live keys: every instance refuses it within REFRESH_MS. */
export async function revokeApiKey(deps: VaultDeps, caller: Caller, id: string): Promise<ApiKeyInfo> {
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    const revoked = await deps.apiKeys.revoke(tx, caller.tenant, id);
    if (!revoked) throw new VaultError('not_found', 'no live API key with this id');
    return { value: revoked, events: [eventOf(caller, 'apikey_revoke', 1)] };
  });
}

/** How long an instance trusts what it read of a key: a revocation reaches every instance within this. */
export const REFRESH_MS = 4_000;
const MAX_ENTRIES = 10_000;
const TOUCH_EVERY_MS = 60 * 60_000;

interface Entry {
  row: ApiKeyRow | null;
  identity: Identity | null;
  readAt: number;
}

/**
 * Turns a presented key into the identity its row names, or null. Rows are read by the key's public id and kept
 * for REFRESH_MS (unknown ids too), one read at a time per id; the secret is checked against the stored hash on
 * every request, in constant time. Last use is written at most once an hour per key.
 */
export function createApiKeyVerifier(store: ApiKeysStore, hashKey: Buffer, logger: Logger) {
  const entries = new Map<string, Entry>();
  const reading = new Map<string, Promise<Entry>>();

  const read = (id: string): Promise<Entry> => {
    let pending = reading.get(id);
    if (!pending) {
      const readAt = Date.now();
      pending = store
        .find(id)
        .then((row) => {
          const entry = { row, identity: row ? { tenant: row.tenant, client: row.name, scopes: new Set(row.scopes) } : null, readAt };
          entries.delete(id);
          if (entries.size >= MAX_ENTRIES) entries.delete(entries.keys().next().value!);
          entries.set(id, entry);
          return entry;
        })
        .finally(() => reading.delete(id));
      reading.set(id, pending);
    }
    return pending;
  };

  const touch = (row: ApiKeyRow) => {
    row.lastUsedAt = new Date();
    store.touch(row.tenant, row.id).catch((error: unknown) => logger.warn({ err: safeErrorFields(error) }, 'could not note an API key use'));
  };

  return async (credential: string): Promise<Identity | null> => {
    const parts = parseApiKey(credential);
    if (!parts) return null;
    let entry = entries.get(parts.id);
    if (!entry || Date.now() - entry.readAt >= REFRESH_MS) entry = await read(parts.id);
    const { row, identity } = entry;
    if (!row || !identity || row.revokedAt || (row.expiresAt && row.expiresAt.getTime() <= Date.now())) return null;
    if (!apiKeyMatches(hashKey, parts, row.keyHash)) return null;
    if (!row.lastUsedAt || Date.now() - row.lastUsedAt.getTime() >= TOUCH_EVERY_MS) touch(row);
    return identity;
  };
}

export type ApiKeyVerifier = ReturnType<typeof createApiKeyVerifier>;
