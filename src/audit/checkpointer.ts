import type { Logger } from 'pino';
import type { ChainLink } from './chain.js';
import { CHECKPOINT_MESSAGE, checkpointFields } from './checkpoint.js';

/**
 * Writes each tenant's audit head to the log, signed (src/audit/checkpoint.ts), every `everyEvents` events or
 * `intervalMs` after its head last moved: logs leave the machine, so a chain later rewound in the database is
 * found short of a checkpoint by `phonevault audit verify --checkpoints`. Only heads that moved are written.
 */
export function createCheckpointer(options: { key: Buffer; logger: Logger; everyEvents: number; intervalMs: number }) {
  const pending = new Map<string, { head: ChainLink; events: number }>();

  const write = (tenant: string) => {
    const entry = pending.get(tenant);
    if (!entry) return;
    pending.delete(tenant);
    options.logger.info(checkpointFields(options.key, { tenant, ...entry.head }), CHECKPOINT_MESSAGE);
  };
  const writeAll = () => {
    for (const tenant of [...pending.keys()]) write(tenant);
  };

  const timer = setInterval(writeAll, options.intervalMs);
  timer.unref();

  return {
    advanced(tenant: string, head: ChainLink, appended: number): void {
      const entry = pending.get(tenant);
      if (entry && entry.head.seq >= head.seq) return;
      const events = (entry?.events ?? 0) + appended;
      pending.set(tenant, { head, events });
      if (events >= options.everyEvents) write(tenant);
    },
    /** Writes every head that moved since its last checkpoint, and stops. */
    close(): void {
      clearInterval(timer);
      writeAll();
    },
  };
}
