import { fingerprintNumber } from '../crypto/fingerprint.js';
import { parseToken } from '../crypto/tokens.js';
import { VaultError } from '../errors.js';
import { parsePhone } from '../phone/parse.js';
import { deleteLiveToken, deleteTokens, findByFingerprint } from '../store/tokens/queries.js';
import type { EnvelopeRow } from '../store/tokens/rows.js';
import { eventOf, type Caller } from './caller.js';
import type { VaultDeps } from './deps.js';
import { rowsHolding } from './holders.js';
import type { PhoneInput } from './tokenize.js';

const PAGE = 1_000;

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
 * Each candidate is opened first, and only the rows that hold this very number are deleted.
 */
export async function eraseNumber(deps: VaultDeps, caller: Caller, input: PhoneInput): Promise<number> {
  const { e164 } = parsePhone(input.phone, input.country);
  const keys = await deps.keyring.forReading(caller.tenant);
  return deps.auditLog.commit(caller.tenant, async (tx) => {
    if (!keys) return { value: 0, events: [eventOf(caller, 'erase_number', 0)] };
    const fingerprint = fingerprintNumber(keys.fingerprintKey, e164);
    const holding: EnvelopeRow[] = [];
    let others = 0;
    for (let after: Buffer | null = null; ; ) {
      const page = await findByFingerprint(tx, caller.tenant, fingerprint, { after, limit: PAGE, liveOnly: false });
      const checked = await rowsHolding(keys, caller.tenant, page, e164);
      holding.push(...checked.holding);
      others += checked.others;
      if (page.length < PAGE) break;
      after = page.at(-1)!.tokenId;
    }
    if (others > 0) deps.logger.warn({ tenant: caller.tenant, rows: others }, 'rows whose fingerprint matched do not hold the number; left in place');
    let erased = 0;
    for (let i = 0; i < holding.length; i += PAGE) {
      erased += await deleteTokens(tx, caller.tenant, fingerprint, holding.slice(i, i + PAGE).map((row) => row.tokenId));
    }
    return { value: erased, events: [eventOf(caller, 'erase_number', erased)] };
  });
}
