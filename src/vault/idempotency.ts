import { createHmac, randomBytes } from 'node:crypto';
import { encodeFields } from '../crypto/aead.js';
import { VaultError } from '../errors.js';
import type { Recorded } from '../store/audit-log.js';
import type { Transaction } from '../store/db.js';
import type { IdempotencyKey } from '../store/idempotency.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';

/** How long a key answers with its first answer. */
export const IDEMPOTENCY_TTL_S = 24 * 3600;

/** A write made once however often it is sent: the client's key, the operation, and the request it names. */
export interface Once {
  key: string;
  /** Which operation: the same key on another is another request. */
  operation: string;
  /** The audit action its replays are recorded under. */
  action: string;
  /** The request as validated (defaults applied): what makes a retry the same request. */
  request: unknown;
}

/** How a use-case's value is kept as the first answer and given back on a replay. */
export interface Answer<T> {
  status: number;
  toStored(value: T): unknown;
  fromStored(stored: unknown): T;
  /** What the value counts, for the replay's audit event. */
  items(value: T): number;
}

/** JSON with its keys in one order, so that one request hashes alike however its fields were ordered. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.entries(value)
      .filter(([, field]) => field !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, field]) => `${JSON.stringify(name)}:${canonical(field)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The key and the request as the table holds them: HMACs under the tenant's fingerprint key, so that neither the
 * client's key (which could be anything, a number included) nor any part of the body is stored.
 */
export function idempotencyHashes(fingerprintKey: Buffer, caller: Caller, once: Once): IdempotencyKey {
  const mac = (fields: string[]) => createHmac('sha256', fingerprintKey).update(encodeFields(fields)).digest();
  return {
    tenant: caller.tenant,
    keyHash: mac(['phonevault:idempotency-key:v1', caller.client, once.key]),
    bodyHash: mac(['phonevault:idempotency-request:v1', once.operation, canonical(once.request)]),
  };
}

/**
 * Runs `work` once for a key: the first request claims it, does its work and records its answer in the same
 * transaction as the work and its audit event; a retry with the same request gets that answer again, read in a
 * transaction that records the replay (outcome `replayed`), and writes nothing else. The same key with another
 * request is 422; a key whose first request is still running is 409. A request that fails gives its key up, so
 * that a retry runs afresh (it stored nothing).
 */
export async function runOnce<T>(
  deps: VaultDeps,
  caller: Caller,
  once: Once,
  answer: Answer<T>,
  fingerprintKey: Buffer,
  work: (tx: Transaction) => Promise<Recorded<T>>,
): Promise<{ value: T; replayed: boolean }> {
  const key = idempotencyHashes(fingerprintKey, caller, once);
  for (let attempt = 0; attempt < 3; attempt++) {
    const claim = await deps.idempotency.claim(key, randomBytes(16), IDEMPOTENCY_TTL_S);
    if (claim.claimed) {
      try {
        const value = await deps.auditLog.commit(caller.tenant, async (tx) => {
          const recorded = await work(tx);
          if (!(await deps.idempotency.complete(tx, key, claim.claim, answer.status, answer.toStored(recorded.value)))) throw inFlight();
          return recorded;
        });
        return { value, replayed: false };
      } catch (error) {
        await deps.idempotency.release(key, claim.claim).catch(() => undefined);
        throw error;
      }
    }
    if (claim.state === 'gone') continue;
    if (!claim.sameBody) throw new VaultError('idempotency_key_reused', 'this Idempotency-Key was used with another request; use a new key');
    if (claim.state === 'in_flight') throw inFlight();
    const replayed = await deps.auditLog.commit(caller.tenant, async (tx) => {
      const first = await deps.idempotency.answer(tx, key);
      if (!first) return { value: null, events: [] };
      const value = answer.fromStored(first.answer);
      return { value, events: [{ ...eventOf(caller, once.action, answer.items(value)), outcome: 'replayed' }] };
    });
    if (replayed !== null) return { value: replayed, replayed: true };
  }
  throw inFlight();
}

const inFlight = () => new VaultError('idempotency_in_flight', 'a request with this Idempotency-Key is still being processed; retry shortly', { retryAfterS: 1 });
