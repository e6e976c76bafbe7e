import { fingerprintNumber } from '../crypto/fingerprint.js';
import type { ReadKeys } from '../crypto/keyring.js';
import { parseToken } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import { parsePhone } from '../phone/parse.js';
import type { Recorded } from '../store/audit-log.js';
import type { Transaction } from '../store/db.js';
import { deleteLiveToken, deleteTokens, findByFingerprint } from '../store/tokens/queries.js';
import type { EnvelopeRow } from '../store/tokens/rows.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';
import { openEach } from './holders.js';
import { runOnce, type Answer } from './idempotency.js';
import type { PhoneInput } from './tokenize.js';

const PAGE = 1_000;
// How far a chain of moved fingerprints is followed before the rest is left to an operator.
const MAX_FINGERPRINTS = 64;

export async function eraseToken(deps: VaultDeps, caller: Caller, token: string): Promise<void> {
  const id = parseToken(token);
  if (!id) throw new VaultError('not_found', 'no such token');
  await deps.auditLog.commit(caller.tenant, async (tx) => {
    // Not found rolls back: nothing was erased, so nothing is recorded as erased.
    if (!(await deleteLiveToken(tx, caller.tenant, id))) throw new VaultError('not_found', 'no such token');
    return { value: undefined, events: [eventOf(caller, 'erase', 1)] };
  });
}

/**
 * The right to erasure: every token of one number in the caller's tenant, in one transaction with its event.
 * Each candidate is opened first, and only the rows that hold this very number are deleted. A row whose
 * fingerprint was moved does not open any more (its envelope is bound to it), so no row of the number that could
 * still be read escapes the search, and one moved in from another number is never erased for it. Format 1 rows
 * (bound to no fingerprint, until rewrapped) can be swapped and still open: a candidate that holds another
 * number sends the search to that number's fingerprint too, so that a swap hides none of this number's rows.
 */
export async function eraseNumber(deps: VaultDeps, caller: Caller, input: PhoneInput): Promise<number> {
  const { e164 } = parsePhone(input.phone, input.country);
  const keys = await deps.keyring.forReading(caller.tenant);
  return deps.auditLog.commit(caller.tenant, (tx) => eraseWork(deps, caller, e164, keys, tx));
}

const ERASED: Answer<number> = { status: 200, toStored: (erased) => erased, fromStored: (stored) => stored as number, items: (erased) => erased };

/** eraseNumber, once per Idempotency-Key (src/vault/idempotency.ts): a retry gets the first count, erases nothing more. */
export async function eraseNumberOnce(deps: VaultDeps, caller: Caller, input: PhoneInput, key: string): Promise<{ value: number; replayed: boolean }> {
  const { e164 } = parsePhone(input.phone, input.country);
  const keys = await deps.keyring.forReading(caller.tenant);
  // A tenant without keys holds no number: nothing to erase, now or on any retry.
  if (!keys) return { value: await eraseNumber(deps, caller, input), replayed: false };
  const once = { key, operation: 'eraseNumber', action: 'erase_number', request: input };
  return runOnce(deps, caller, once, ERASED, keys.fingerprintKey, (tx) => eraseWork(deps, caller, e164, keys, tx));
}

async function eraseWork(deps: VaultDeps, caller: Caller, e164: string, keys: ReadKeys | null, tx: Transaction): Promise<Recorded<number>> {
  if (!keys) return { value: 0, events: [eventOf(caller, 'erase_number', 0)] };
  const holding: Array<{ fingerprint: Buffer; row: EnvelopeRow }> = [];
  const searched = new Set<string>();
  const pending = [fingerprintNumber(keys.fingerprintKey, e164)];
  let misplaced = 0;
  while (pending.length > 0 && searched.size < MAX_FINGERPRINTS) {
    const fingerprint = pending.shift()!;
    searched.add(fingerprint.toString('hex'));
    for (let after: Buffer | null = null; ; ) {
      const page = await findByFingerprint(tx, caller.tenant, fingerprint, { after, limit: PAGE, liveOnly: false });
      for (const [row, held] of await openEach(keys, caller.tenant, page)) {
        if (held === e164) {
          holding.push({ fingerprint, row });
          continue;
        }
        misplaced++;
        const theirs = held === null ? null : fingerprintNumber(keys.fingerprintKey, held);
        if (theirs && !searched.has(theirs.toString('hex')) && !pending.some((f) => f.equals(theirs))) pending.push(theirs);
      }
      if (page.length < PAGE) break;
      after = page.at(-1)!.tokenId;
    }
  }
  if (misplaced > 0) deps.logger.warn({ tenant: caller.tenant, rows: misplaced }, 'rows whose fingerprint does not match the number they hold; left in place');
  const byFingerprint = new Map<string, { fingerprint: Buffer; ids: Buffer[] }>();
  for (const { fingerprint, row } of holding) {
    const key = fingerprint.toString('hex');
    const entry = byFingerprint.get(key) ?? { fingerprint, ids: [] };
    entry.ids.push(row.tokenId);
    byFingerprint.set(key, entry);
  }
  let erased = 0;
  for (const { fingerprint, ids } of byFingerprint.values()) {
    for (let i = 0; i < ids.length; i += PAGE) erased += await deleteTokens(tx, caller.tenant, fingerprint, ids.slice(i, i + PAGE));
  }
  return { value: erased, events: [eventOf(caller, 'erase_number', erased)] };
}
