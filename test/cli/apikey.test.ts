import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestApp } from '../helpers/build.js';
import { NUMBERS } from '../helpers/numbers.js';
import { createVaultDatabase } from '../helpers/vault-database.js';

// Issue 15, item 7: the operator's way to API keys.
const masterKey = randomBytes(32).toString('base64');
let database: Awaited<ReturnType<typeof createVaultDatabase>>;
let t: TestApp;
const run = (argv: string[]) => database.run(argv, masterKey);

beforeAll(async () => {
  database = await createVaultDatabase(masterKey);
  t = await database.app();
});
afterAll(async () => {
  await database.drop();
});

const tokenize = (key: string) => t.app.inject({ method: 'POST', url: '/v1/tokenize', headers: { authorization: `Bearer ${key}` }, payload: { phone: NUMBERS.us.e164 } });

describe('phonevault apikey', () => {
  it('create prints the key once, list never prints it, revoke stops it', async () => {
    const made = await run(['apikey', 'create', '--tenant', 'acme', '--name', 'lead-import', '--scope', 'tokenize', '--expires', '90d']);
    expect(made.code, made.err).toBe(0);
    const key = made.out.trim();
    expect(key).toMatch(/^pvk_[0-9A-Za-z]{60}$/);
    const id = /API key ([0-9a-f]{16}) for tenant acme, client lead-import, scopes tokenize/.exec(made.err)?.[1];
    expect(id).toBeDefined();
    expect((await tokenize(key)).statusCode).toBe(201);

    const listed = await run(['apikey', 'list', '--tenant', 'acme']);
    expect(listed.code).toBe(0);
    expect(listed.out).toMatch(new RegExp(`^${id}\\tacme\\tlead-import\\ttokenize\\tlive\\texpires 20\\d\\d-`, 'm'));
    expect(listed.out).not.toContain('pvk_');
    expect((await run(['apikey', 'list', '--tenant', 'nobody'])).out).toBe('');
    expect((await run(['apikey', 'list'])).out).toContain(id);

    const revoked = await run(['apikey', 'revoke', id!]);
    expect(revoked.code).toBe(0);
    expect(revoked.out).toBe(`revoked ${id} (lead-import, tenant acme)`);
    expect((await run(['apikey', 'list'])).out).toMatch(new RegExp(`^${id}\\t.*\\trevoked 20`, 'm'));
    const again = await run(['apikey', 'revoke', id!]);
    expect(again.code).toBe(1);
    expect(again.err).toContain('no live API key with this id');

    const events = await database.db.query<{ client: string; action: string }>(`SELECT client, action FROM audit_events WHERE tenant_id = 'acme' AND action LIKE 'apikey%' ORDER BY seq`);
    expect(events.rows).toEqual([
      { client: 'cli', action: 'apikey_create' },
      { client: 'cli', action: 'apikey_list' },
      { client: 'cli', action: 'apikey_revoke' },
    ]);
  });

  it('refuses bad arguments, naming them, and writes nothing', async () => {
    const before = (await database.db.query('SELECT count(*)::int AS n FROM api_keys')).rows[0] as { n: number };
    for (const [argv, code, says] of [
      [['apikey', 'create', '--tenant', 'acme', '--name', 'crm', '--scope', 'tokenize root'], 1, 'scopes: one or more of'],
      [['apikey', 'create', '--tenant', 'acme', '--name', 'svc-4155550123', '--scope', 'tokenize'], 1, 'name:'],
      [['apikey', 'create', '--tenant', 'bad tenant', '--name', 'crm', '--scope', 'tokenize'], 1, 'tenant:'],
      [['apikey', 'create', '--tenant', 'acme', '--name', 'crm', '--scope', 'tokenize', '--expires', 'soon'], 2, "'--expires"],
      [['apikey', 'create', '--tenant', 'acme', '--scope', 'tokenize'], 2, "'--name <name>'"],
      [['apikey', 'revoke', 'nothex'], 2, 'the id is 16 hex digits'],
      [['apikey', 'revoke', '0123456789abcdef'], 1, 'no API key with this id'],
    ] as const) {
      const answer = await run([...argv]);
      expect(answer.code, argv.join(' ')).toBe(code);
      expect(answer.err).toContain(says);
      expect(answer.out).toBe('');
    }
    expect((await database.db.query('SELECT count(*)::int AS n FROM api_keys')).rows[0]).toEqual(before);
  });
});
