import { describe, expect, it } from 'vitest';
import { createBatcher, type BatcherOptions } from '../../src/store/batcher.js';

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

/** A batcher whose flushes take a moment and are recorded; a job of 13 makes its flush fail. */
function recordingBatcher(options: BatcherOptions, sizeOf: (job: number) => number = () => 1) {
  const flushes: number[][] = [];
  const batch = createBatcher<number, number>(
    async (jobs) => {
      flushes.push(jobs);
      await tick();
      if (jobs.includes(13)) throw new Error('unlucky');
      return jobs.map((job) => job * 10);
    },
    sizeOf,
    options,
  );
  return { batch, flushes };
}

describe('batcher', () => {
  it('sends a lone job at once, and coalesces jobs that arrive while a flush is in flight', async () => {
    const { batch, flushes } = recordingBatcher({ maxInFlight: 1, maxItems: 100 });
    const first = batch(1);
    expect(flushes).toEqual([[1]]);
    const rest = [2, 3, 4].map((n) => batch(n));
    expect(await Promise.all([first, ...rest])).toEqual([10, 20, 30, 40]);
    expect(flushes).toEqual([[1], [2, 3, 4]]);
  });

  it('respects maxItems, but never splits one job', async () => {
    const { batch, flushes } = recordingBatcher({ maxInFlight: 1, maxItems: 5 }, (job) => job);
    await Promise.all([batch(1), batch(3), batch(3), batch(9)]);
    expect(flushes).toEqual([[1], [3], [3], [9]]);
  });

  // One request's bad row must not fail the others that shared its statement.
  it('retries a failed shared flush job by job, failing only the job that fails alone', async () => {
    const { batch, flushes } = recordingBatcher({ maxInFlight: 1, maxItems: 100 });
    const first = batch(1);
    const results = await Promise.allSettled([first, batch(2), batch(13), batch(4)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(flushes).toEqual([[1], [2, 13, 4], [2], [13], [4]]);
  });

  it('sends large jobs at once, alongside a flush in flight', async () => {
    const { batch, flushes } = recordingBatcher({ maxInFlight: 1, maxItems: 1000, directItems: 100 }, (job) => job);
    const small = batch(1);
    const big = batch(500);
    expect(flushes).toEqual([[1], [500]]);
    await Promise.all([small, big]);
  });
});
