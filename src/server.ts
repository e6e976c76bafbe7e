import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import type { Config } from './config/index.js';
import type { KekSet } from './crypto/kek.js';
import { openKeks } from './crypto/open-keks.js';
import { createPgDb, type Db } from './store/db.js';
import { guardMasterKeys } from './store/master-key-guard.js';
import { migrate } from './store/migrate.js';
import { createRedis } from './store/redis.js';
import { createTokenMaintenance } from './store/tokens/maintenance.js';
import { createIdempotencyStore } from './store/idempotency.js';
import { safeErrorFields } from './logger.js';
import { sweep } from './vault/maintenance.js';

const SHUTDOWN_GRACE_MS = 10_000;

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/**
 * Connects, checks the master keys against the database, builds the app and listens. close() stops taking
 * connections, lets in-flight requests finish, then ends the pool.
 */
export async function startServer(config: Config, logger: Logger, db: Db = createPgDb({ connectionString: config.databaseUrl, logger })): Promise<RunningServer> {
  let keks: KekSet | undefined;
  try {
    if (config.migrateOnStart) {
      const applied = await migrate(db);
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    }
    keks = await openKeks(config.kek, logger);
    await guardMasterKeys(db, keks);
  } catch (error) {
    await keks?.close();
    await db.close();
    throw error;
  }
  logger.info({ keks: keks.health().map(({ id, provider, active }) => ({ id, provider, active })) }, 'key-encryption keys ready');
  const redis = config.redisUrl ? createRedis(config.redisUrl, logger) : undefined;
  const app = await buildApp(config, { db, logger, redis, keks });
  app.server.headersTimeout = 10_000;
  app.server.requestTimeout = 30_000;
  app.server.keepAliveTimeout = 65_000;
  const url = await app.listen({ host: config.host, port: config.port });
  logger.info({ url }, 'phonevault listening');
  const expirySweeper = config.sweepIntervalMs ? startSweeper(db, logger, config.sweepIntervalMs) : null;

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      const timer = setTimeout(() => {
        logger.error('shutdown took too long; exiting');
        process.exit(1);
      }, SHUTDOWN_GRACE_MS);
      timer.unref();
      if (expirySweeper) clearInterval(expirySweeper);
      // Keep-alive connections that were busy when closing began go idle later; close them as they do, so that
      // shutdown waits for in-flight requests, not for keep-alive timeouts.
      const idleCloser = setInterval(() => app.server.closeIdleConnections(), 50);
      await app.close().finally(() => clearInterval(idleCloser));
      await keks.close();
      await db.close();
      redis?.disconnect();
      clearTimeout(timer);
    })());
  return { app, url, close };
}

/** Deletes expired tokens and idempotency keys every interval; several instances doing so at once only share the work. */
function startSweeper(db: Db, logger: Logger, intervalMs: number): NodeJS.Timeout {
  const stores = { maintenance: createTokenMaintenance(db), idempotency: createIdempotencyStore(db) };
  const timer = setInterval(() => {
    sweep(stores).then(
      (deleted) => (deleted.tokens > 0 || deleted.idempotencyKeys > 0) && logger.info(deleted, 'expired tokens and idempotency keys swept'),
      (error) => logger.warn({ err: safeErrorFields(error) }, 'sweep failed'),
    );
  }, intervalMs);
  timer.unref();
  return timer;
}

/** SIGTERM and SIGINT close the server gracefully once; a second signal is ignored while it drains. */
export function closeOnSignals(server: RunningServer, logger: Logger): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'shutting down');
      server.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}
