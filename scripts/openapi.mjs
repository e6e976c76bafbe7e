// Writes openapi.yaml from the routes' own schemas (`npm run openapi`, after a build). test/http/openapi.test.ts
// fails when the file and the served /openapi.json disagree. The app is built on a throwaway embedded Postgres.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { stringify } from 'yaml';
import { buildApp } from '../dist/app.js';
import { loadConfig } from '../dist/config/index.js';
import { createEmbeddedDb } from '../dist/store/embedded-db.js';
import { migrate } from '../dist/store/migrate.js';

const config = loadConfig({
  DATABASE_URL: 'postgres://unused/openapi',
  VAULT_MASTER_KEY: randomBytes(32).toString('base64'),
  JWT_SECRET: randomBytes(48).toString('base64'),
  JWT_ISSUER: 'openapi',
  JWT_AUDIENCE: 'openapi',
  OFFLOAD_THREADS: '0',
});
const dir = mkdtempSync(join(tmpdir(), 'phonevault-openapi-'));
const db = await createEmbeddedDb(join(dir, 'pgdata'));
try {
  await migrate(db);
  const app = await buildApp(config, { db, logger: pino({ level: 'silent' }) });
  await app.ready();
    // Every repeat written out, never as a YAML alias: some generators do not follow them.
  writeFileSync(new URL('../openapi.yaml', import.meta.url), stringify(app.swagger(), { aliasDuplicateObjects: false, lineWidth: 0 }));
  await app.close();
} finally {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
}
