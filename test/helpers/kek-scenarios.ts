import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { KekConfig } from '../../src/config/index.js';
import { KEK_SETTING, KekSet, type Kek, type KekProvider } from '../../src/crypto/kek.js';
import { createPgDb, type Db } from '../../src/store/db.js';
import { bearer, build, uniqueName, type TestApp } from './build.js';
import { runCli } from './cli.js';
import { ADMIN_TIMEOUT_MS, createTestDatabase } from './database.js';
import { NUMBERS } from './numbers.js';
import { asVaultRole } from './roles.js';

/** Through the set, as the keyring uses it: a data key moved to another tenant, purpose or version opens nowhere. */
export async function expectBoundToItsKey(kek: Kek, raw: Buffer): Promise<void> {
  const keks = new KekSet([kek]);
  const wrapped = await keks.wrap('acme', 'data', 1, raw);
  expect((await keks.unwrap('acme', 'data', 1, wrapped)).equals(raw)).toBe(true);
  for (const [tenant, purpose, version] of [['other', 'data', 1], ['acme', 'fingerprint', 1], ['acme', 'data', 2]] as const) {
    await expect(keks.unwrap(tenant, purpose, version, wrapped)).rejects.toThrow(/refused/);
  }
}

/** A KEK provider under test, with the means to take it away from outside the vault. */
export interface KekUnderTest {
  provider: KekProvider;
  kekId: string;
  /** Its variables for the command line (KEK_PROVIDER included). */
  env: Record<string, string>;
  config: KekConfig;
  /** The same KEK id configured on another key of the same provider. */
  otherKeyEnv: Record<string, string>;
  takeAway(): void | Promise<void>;
  bringBack(): void | Promise<void>;
  /** What must never reach a log: a PIN, a credential. */
  secrets: string[];
}

export interface KekScenario {
  /** A vault instance on the scenario's database, closed after the file. */
  app(overrides: Parameters<typeof build>[0]): Promise<TestApp>;
}

/**
 * Issue 16's promises that every provider keeps, registered in the calling describe block: an operator's move
 * from an env key to the provider, online, leaving no trace of the old key; and an outage of the provider, which
 * cached tenants do not notice, the others see as 503, and which ends without a restart.
 */
export function kekScenarios(under: () => KekUnderTest): KekScenario {
  let url: string;
  let drop: () => Promise<void>;
  let owner: Db;
  let vaultDb: Db;
  const apps: TestApp[] = [];
  const envKey = randomBytes(32).toString('base64');
  const app = async (overrides: Parameters<typeof build>[0]) => {
    const t = await build(overrides, { db: vaultDb, owner, url, schema: 'public', drop: async () => {} });
    apps.push(t);
    return t;
  };
  beforeAll(async () => {
    ({ url, drop } = await createTestDatabase());
    expect((await runCli(['migrate'], { DATABASE_URL: url, VAULT_MASTER_KEY: envKey })).code).toBe(0);
    owner = createPgDb({ connectionString: url, max: 2, queryTimeoutMs: ADMIN_TIMEOUT_MS });
    vaultDb = createPgDb({ connectionString: asVaultRole(url), max: 4 });
  });
  afterAll(async () => {
    for (const t of apps) await t.app.close();
    await vaultDb.close();
    await owner.close();
    await drop();
  });

  const kekIds = async () =>
    (
      await owner.query<{ kek_id: string }>(
        `SELECT kek_id FROM data_keys WHERE kek_id IS NOT NULL UNION SELECT fingerprint_kek_id FROM tenant_keys
         UNION SELECT kek_id FROM audit_keys UNION SELECT kek_id FROM master_key_checks ORDER BY 1`,
      )
    ).rows.map((row) => row.kek_id);
  const up = (kek: KekUnderTest, value: 0 | 1) => `phonevault_kek_up{kek="${kek.kekId}",provider="${kek.provider}",active="true"} ${value}`;

  it('configures both, re-wraps, removes the env key and restarts: old tokens read, and the old key left no trace', async () => {
    const kek = under();
    const tenant = uniqueName('m');
    const headers = bearer({ tenant, scope: 'tokenize detokenize admin' });
    const before = await app({ masterKeys: [{ id: 'default', key: Buffer.from(envKey, 'base64') }] });
    const made = await Promise.all([NUMBERS.us.e164, NUMBERS.gb.e164].map(async (phone) => (await before.app.inject({ method: 'POST', url: '/v1/tokenize', headers, payload: { phone } })).json().token as string));
    expect(await kekIds()).toEqual(['default']);

    // The new provider alone is refused while keys are wrapped by the env key.
    const early = await runCli(['keys', 'rewrap-master'], { DATABASE_URL: url, ...kek.env });
    expect(early.code).toBe(78);
    expect(early.err).toContain('data keys are wrapped by master key "default", which is not configured');

    // Both configured, the new one first (active): everything is re-wrapped under it, and the env key's check value goes.
    const both = { DATABASE_URL: url, ...kek.env, KEK_PROVIDER: `${kek.provider},env`, VAULT_MASTER_KEY: envKey };
    const rewrapped = await runCli(['keys', 'rewrap-master'], both);
    expect(rewrapped.code, rewrapped.err).toBe(0);
    expect(rewrapped.out).toMatch(/re-wrapped [1-9]\d* key\(s\) under the active master key; no key is wrapped by "default" any more/);
    expect(await kekIds()).toEqual([kek.kekId]);

    // The env key removed: the new provider alone serves the old tokens and makes new ones.
    const after = await app({ kek: kek.config });
    const read = (await after.app.inject({ method: 'POST', url: '/v1/detokenize', headers, payload: { tokens: made } })).json();
    expect(read.results.map((r: { phone: string }) => r.phone)).toEqual([NUMBERS.us.e164, NUMBERS.gb.e164]);
    const fresh = await after.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant: uniqueName('n') }), payload: { phone: NUMBERS.us.e164 } });
    expect(fresh.statusCode).toBe(201);
    const keys = (await after.app.inject({ method: 'GET', url: '/v1/keys', headers })).json();
    expect(keys.keys[0].kek).toEqual({ id: kek.kekId, provider: kek.provider });
    expect((await after.app.inject({ method: 'GET', url: '/metrics' })).body).toContain(up(kek, 1));
    expect(await kekIds()).toEqual([kek.kekId]);
    // The command line verifies the stored check value against the key, and another key under the same id is refused.
    expect((await runCli(['audit', 'verify'], { DATABASE_URL: url, ...kek.env })).code).toBe(0);
    const wrongKey = await runCli(['audit', 'verify'], { DATABASE_URL: url, ...kek.otherKeyEnv });
    expect(wrongKey.code).toBe(78);
    expect(wrongKey.err).toContain(`${KEK_SETTING[kek.provider]}: the key with id "${kek.kekId}" is not the one this database was written with`);
  });

  it('keeps cached tenants working through an outage, answers 503 for the others, and recovers without a restart', async () => {
    const kek = under();
    const cached = uniqueName('c');
    const cold = uniqueName('d');
    const writer = await app({ kek: kek.config });
    const tokenOf = async (t: TestApp, who: string) => (await t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: bearer({ tenant: who }), payload: { phone: NUMBERS.us.e164 } })).json().token as string;
    const [cachedToken, coldToken] = [await tokenOf(writer, cached), await tokenOf(writer, cold)];
    // Another instance, which has only ever read the first tenant's keys.
    const instance = await app({ kek: kek.config });
    const detokenize = (who: string, token: string) => instance.app.inject({ method: 'POST', url: '/v1/detokenize', headers: bearer({ tenant: who }), payload: { tokens: [token] } });
    expect((await detokenize(cached, cachedToken)).statusCode).toBe(200);

    await kek.takeAway();
    try {
      expect((await detokenize(cached, cachedToken)).json().results[0].phone).toBe(NUMBERS.us.e164);
      const refused = await detokenize(cold, coldToken);
      expect(refused.statusCode).toBe(503);
      expect(refused.json().code).toBe('unavailable');
      expect(refused.headers['retry-after']).toBe('1');
      expect(instance.logs.some((line) => line.msg === 'key-encryption key unavailable' && line.kek === kek.kekId)).toBe(true);
      for (const secret of kek.secrets) expect(instance.rawLogs.join('\n')).not.toContain(secret);
      expect((await instance.app.inject({ method: 'GET', url: '/metrics' })).body).toContain(up(kek, 0));
      // A rotation needs the KEK to wrap the new key: refused, and no version comes to be.
      const versions = async () => Number((await owner.query<{ n: string }>('SELECT count(*) AS n FROM data_keys WHERE tenant_id = $1', [cached])).rows[0]!.n);
      const before = await versions();
      const rotation = await instance.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: bearer({ tenant: cached, scope: 'admin' }) });
      expect(rotation.statusCode).toBe(503);
      expect(await versions()).toBe(before);
    } finally {
      await kek.bringBack();
    }
    // Looked for again at most once a second: the tenant reads again without a restart.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const recovered = await detokenize(cold, coldToken);
    expect(recovered.statusCode).toBe(200);
    expect(recovered.json().results[0].phone).toBe(NUMBERS.us.e164);
    expect((await instance.app.inject({ method: 'GET', url: '/metrics' })).body).toContain(up(kek, 1));
  });

  return { app };
}
