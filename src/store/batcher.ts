/**
 * Coalesces concurrent jobs into shared round trips: a job that arrives while the database is busy waits for the
 * next flush and rides along with every other job that arrived meanwhile; a job that arrives when nothing is in
 * flight goes out at once, so an idle vault adds no wait. Each flush runs `run` over the jobs it took; when a
 * shared flush fails, its jobs are retried one by one, so that one job's failure never fails another.
 */
export interface BatcherOptions {
  /** Flushes allowed in flight at once (each holds one connection). */
  maxInFlight: number;
  /** Items (rows) per flush; a single job larger than this still goes alone. */
  maxItems: number;
  /** A job this large already amortises its round trip: it goes out at once, alone, never queued. */
  directItems?: number;
}

interface Pending<J, R> {
  job: J;
  size: number;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

export function createBatcher<J, R>(run: (jobs: J[]) => Promise<R[]>, sizeOf: (job: J) => number, options: BatcherOptions) {
  const queue: Pending<J, R>[] = [];
  let inFlight = 0;

  async function flush(taken: Pending<J, R>[]): Promise<void> {
    try {
      const results = await run(taken.map((p) => p.job));
      taken.forEach((p, index) => p.resolve(results[index]!));
    } catch (error) {
      if (taken.length === 1) taken[0]!.reject(error);
      else await Promise.all(taken.map((p) => flush([p])));
    }
  }

  function pump(): void {
    while (inFlight < options.maxInFlight && queue.length > 0) {
      const taken: Pending<J, R>[] = [];
      let items = 0;
      while (queue.length > 0 && (taken.length === 0 || items + queue[0]!.size <= options.maxItems)) {
        const next = queue.shift()!;
        items += next.size;
        taken.push(next);
      }
      inFlight++;
      void flush(taken).finally(() => {
        inFlight--;
        pump();
      });
    }
  }

  return (job: J): Promise<R> =>
    new Promise<R>((resolve, reject) => {
      const size = sizeOf(job);
      if (options.directItems !== undefined && size >= options.directItems) {
        void flush([{ job, size, resolve, reject }]);
        return;
      }
      queue.push({ job, size, resolve, reject });
      pump();
    });
}
