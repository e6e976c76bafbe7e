/**
 * Coalesces concurrent jobs of one tenant into shared round trips: a job that arrives while its tenant's previous
 * flush is in flight waits for the next and rides along with every other job of that tenant that arrived
 * meanwhile; a job that finds nothing in flight goes out at once, so an idle vault adds no wait. Tenants never
 * share a flush, so that every statement touches one tenant (and a distributed Postgres routes it to one shard),
 * and one tenant's flushes never wait for another's. Large jobs queue like small ones: one flush in flight per
 * tenant is what lets each chain its audit events from the head the previous one left (src/store/audit-log.ts).
 * A flush of several jobs that fails for a reason `isolate` names runs each of them again alone, in order, so that
 * only the job at fault fails (an event one client's request cannot record fails no other client's request).
 */
export interface BatcherOptions<J> {
  tenantOf: (job: J) => string;
  sizeOf: (job: J) => number;
  /** Items (rows) per flush; a single job larger than this still goes alone. */
  maxItems: number;
  /** Whether a failed flush of several jobs may be one job's fault, not the storage's: each then runs alone. */
  isolate?: (error: unknown) => boolean;
}

interface Pending<J, R> {
  job: J;
  size: number;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

interface TenantQueue<J, R> {
  waiting: Pending<J, R>[];
  inFlight: boolean;
}

export function createBatcher<J, R>(run: (tenant: string, jobs: J[]) => Promise<R[]>, options: BatcherOptions<J>) {
  const queues = new Map<string, TenantQueue<J, R>>();

  async function flush(tenant: string, taken: Pending<J, R>[]): Promise<void> {
    try {
      const results = await run(
        tenant,
        taken.map((p) => p.job),
      );
      taken.forEach((p, index) => p.resolve(results[index]!));
    } catch (error) {
      if (taken.length === 1 || !options.isolate?.(error)) {
        for (const p of taken) p.reject(error);
        return;
      }
      for (const p of taken) {
        try {
          p.resolve((await run(tenant, [p.job]))[0]!);
        } catch (own) {
          p.reject(own);
        }
      }
    }
  }

  function pump(tenant: string, queue: TenantQueue<J, R>): void {
    if (queue.inFlight) return;
    if (queue.waiting.length === 0) {
      queues.delete(tenant);
      return;
    }
    const taken: Pending<J, R>[] = [];
    let items = 0;
    while (queue.waiting.length > 0 && (taken.length === 0 || items + queue.waiting[0]!.size <= options.maxItems)) {
      const next = queue.waiting.shift()!;
      items += next.size;
      taken.push(next);
    }
    queue.inFlight = true;
    void flush(tenant, taken).finally(() => {
      queue.inFlight = false;
      pump(tenant, queue);
    });
  }

  return (job: J): Promise<R> =>
    new Promise<R>((resolve, reject) => {
      const size = options.sizeOf(job);
      const tenant = options.tenantOf(job);
      let queue = queues.get(tenant);
      if (!queue) {
        queue = { waiting: [], inFlight: false };
        queues.set(tenant, queue);
      }
      queue.waiting.push({ job, size, resolve, reject });
      pump(tenant, queue);
    });
}
