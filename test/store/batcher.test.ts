import { describe, expect, it } from 'vitest';
import { createBatcher } from '../../src/store/batcher.js';

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

interface Job {
  tenant: string;
  n: number;
}
const job = (n: number, tenant = 'acme'): Job => ({ tenant, n });

/** A batcher whose flushes take a moment and are recorded; a job of 13 makes its flush fail. */
function recordingBatcher(options: { maxItems: number }, sizeOf: (job: Job) => number = () => 1) {
  const flushes: string[] = [];
  const batch = createBatcher<Job, number>(
    async (tenant, jobs) => {
      flushes.push(`${tenant}:${jobs.map((j) => j.n).join(',')}`);
      await tick();
      if (jobs.some((j) => j.n === 13)) throw new Error('unlucky');
      return jobs.map((j) => j.n * 10);
    },
    { tenantOf: (j) => j.tenant, sizeOf, ...options },
  );
  return { batch, flushes };
}

describe('batcher', () => {
  it('sends a lone job at once, and coalesces jobs that arrive while a flush is in flight', async () => {
    const { batch, flushes } = recordingBatcher({ maxItems: 100 });
    const first = batch(job(1));
    expect(flushes).toEqual(['acme:1']);
    const rest = [2, 3, 4].map((n) => batch(job(n)));
    expect(await Promise.all([first, ...rest])).toEqual([10, 20, 30, 40]);
    expect(flushes).toEqual(['acme:1', 'acme:2,3,4']);
  });

  // Every statement touches one tenant; and one tenant's flush never waits for another's.
  it('never puts two tenants in one flush, and flushes each tenant on its own', async () => {
    const { batch, flushes } = recordingBatcher({ maxItems: 100 });
    const all = [batch(job(1, 'a')), batch(job(2, 'b')), batch(job(3, 'a')), batch(job(4, 'b')), batch(job(5, 'a'))];
    expect(flushes).toEqual(['a:1', 'b:2']);
    await Promise.all(all);
    expect(flushes).toEqual(['a:1', 'b:2', 'a:3,5', 'b:4']);
  });

  it('respects maxItems, but never splits one job', async () => {
    const { batch, flushes } = recordingBatcher({ maxItems: 5 }, (j) => j.n);
    await Promise.all([batch(job(1)), batch(job(3)), batch(job(3)), batch(job(9))]);
    expect(flushes).toEqual(['acme:1', 'acme:3', 'acme:3', 'acme:9']);
  });

  // Jobs of a flush were one statement: they fail together, and are not retried one by one behind the caller's back.
  it('fails every job of a failed flush, and carries on with the next', async () => {
    const { batch, flushes } = recordingBatcher({ maxItems: 100 });
    const first = batch(job(1));
    const results = await Promise.allSettled([first, batch(job(2)), batch(job(13)), batch(job(4)), batch(job(5, 'other'))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled']);
    expect(await batch(job(6))).toBe(60);
    expect(flushes).toEqual(['acme:1', 'other:5', 'acme:2,13,4', 'acme:6']);
  });
});
