// Writes openapi.yaml from the routes' own schemas (`npm run openapi`, after a build). test/http/openapi.test.ts
// fails when the file and the served /openapi.json disagree.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import pino from 'pino';
import { buildApp } from '../dist/app.js';
import { loadConfig } from '../dist/config.js';

const config = loadConfig({
  DATABASE_URL: 'postgres://unused/openapi',
  VAULT_MASTER_KEY: randomBytes(32).toString('base64'),
  JWT_SECRET: randomBytes(48).toString('base64'),
  JWT_ISSUER: 'openapi',
  JWT_AUDIENCE: 'openapi',
});
const app = await buildApp(config, { db: {}, logger: pino({ level: 'silent' }) });
await app.ready();
writeFileSync(new URL('../openapi.yaml', import.meta.url), app.swagger({ yaml: true }));
await app.close();
