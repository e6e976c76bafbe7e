import type { Db, Queryable } from './db.js';
import { deleteTenantByTenant } from './sql.js';

/** A key as the table holds it: only keyed hashes of the client's key and of the body it came with. */
export interface IdempotencyKey {
  tenant: string;
  keyHash: Buffer;
  bodyHash: Buffer;
}

export type Claimed = { claimed: true; claim: Buffer } | { claimed: false; state: 'in_flight' | 'done'; sameBody: boolean } | { claimed: false; state: 'gone' };

// A claim may be taken over once it has been in flight longer than any request lives (the vault answers within a
// few seconds or not at all), or once its key expired; a done key is only ever replayed until it expires.
const ABANDONED_AFTER_S = 60;

/** The idempotency keys' table; every write names one tenant. */
export function createIdempotencyStore(db: Db) {
  return {
    /**
     * Claims the key for a request, or says why not: another request holds it (in flight), or it is done (with the
     * same body or another). `gone` means the row vanished between the two reads (a released claim): claim again.
     */
    async claim(key: IdempotencyKey, claim: Buffer, ttlS: number): Promise<Claimed> {
      // A takeover (an expired or abandoned claim) and a first claim, in one statement: no function of the clock
      // in an ON CONFLICT … DO UPDATE, which a distributed Postgres refuses unless immutable.
      const taken = await db.query<{ claimed: string }>(
        `WITH taken AS (
           UPDATE idempotency_keys SET body_hash = $3, claim = $4, state = 'in_flight', status = NULL, answer = NULL,
             claimed_at = now(), expires_at = now() + make_interval(secs => $5)
           WHERE tenant_id = $1 AND key_hash = $2
             AND (expires_at <= now() OR (state = 'in_flight' AND claimed_at < now() - make_interval(secs => ${ABANDONED_AFTER_S})))
           RETURNING 1
         ), made AS (
           INSERT INTO idempotency_keys (tenant_id, key_hash, body_hash, claim, state, expires_at)
           VALUES ($1, $2, $3, $4, 'in_flight', now() + make_interval(secs => $5))
           ON CONFLICT (tenant_id, key_hash) DO NOTHING
           RETURNING 1
         )
         SELECT (SELECT count(*) FROM taken) + (SELECT count(*) FROM made) AS claimed`,
        [key.tenant, key.keyHash, key.bodyHash, claim, ttlS],
      );
      if (Number(taken.rows[0]!.claimed) === 1) return { claimed: true, claim };
      const held = await db.query<{ state: 'in_flight' | 'done'; same_body: boolean }>(
        'SELECT state, body_hash = $3 AS same_body FROM idempotency_keys WHERE tenant_id = $1 AND key_hash = $2',
        [key.tenant, key.keyHash, key.bodyHash],
      );
      const row = held.rows[0];
      return row ? { claimed: false, state: row.state, sameBody: row.same_body } : { claimed: false, state: 'gone' };
    },

    /** Records the answer in the request's own transaction; false when the claim is no longer this request's. */
    async complete(q: Queryable, key: IdempotencyKey, claim: Buffer, status: number, answer: unknown): Promise<boolean> {
      const done = await q.query(
        `UPDATE idempotency_keys SET state = 'done', status = $4, answer = $5
         WHERE tenant_id = $1 AND key_hash = $2 AND claim = $3 AND state = 'in_flight'`,
        [key.tenant, key.keyHash, claim, status, JSON.stringify(answer)],
      );
      return done.rowCount === 1;
    },

    /** Gives the key up after a request that stored nothing, so that a retry runs afresh. */
    async release(key: IdempotencyKey, claim: Buffer): Promise<void> {
      await db.query(`DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key_hash = $2 AND claim = $3 AND state = 'in_flight'`, [key.tenant, key.keyHash, claim]);
    },

    /** The first answer to a done key with this body, read in the transaction that records the replay. */
    async answer(q: Queryable, key: IdempotencyKey): Promise<{ status: number; answer: unknown } | null> {
      const result = await q.query<{ status: number; answer: unknown }>(
        `SELECT status, answer FROM idempotency_keys
         WHERE tenant_id = $1 AND key_hash = $2 AND body_hash = $3 AND state = 'done' AND expires_at > now()`,
        [key.tenant, key.keyHash, key.bodyHash],
      );
      return result.rows[0] ?? null;
    },

    /** Deletes expired keys, up to `limit` a tenant, of the tenants holding the first `limit` found; each delete names its tenant. */
    async sweepExpired(limit: number): Promise<number> {
      return deleteTenantByTenant(
        db,
        'SELECT DISTINCT tenant_id FROM (SELECT tenant_id FROM idempotency_keys WHERE expires_at <= now() LIMIT $1) expired',
        'DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key_hash IN (SELECT key_hash FROM idempotency_keys WHERE tenant_id = $1 AND expires_at <= now() LIMIT $2)',
        limit,
      );
    },
  };
}

export type IdempotencyStore = ReturnType<typeof createIdempotencyStore>;
