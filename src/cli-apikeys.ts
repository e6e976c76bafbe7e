import { Command, InvalidArgumentError } from 'commander';
import { type Io, withVault } from './cli-maintenance.js';
import { parseDuration, type Env } from './config/index.js';
import type { ApiKeyInfo } from './store/api-keys.js';
import { createApiKey, listAllApiKeys, listApiKeys, revokeApiKeyById, REFRESH_MS } from './vault/api-keys.js';
import { cliCaller } from './vault/caller.js';

function lifetime(text: string): number {
  const ms = parseDuration(text);
  if (ms === null || ms < 60_000) throw new InvalidArgumentError('must be a duration of a minute or more, such as 90d');
  return ms;
}

function keyId(text: string): string {
  if (!/^[0-9a-f]{16}$/.test(text)) throw new InvalidArgumentError('the id is 16 hex digits, as `apikey list` prints it');
  return text;
}

const line = (key: ApiKeyInfo) =>
  [
    key.id,
    key.tenant,
    key.name,
    key.scopes.join(' '),
    key.revokedAt ? `revoked ${key.revokedAt.toISOString()}` : key.expiresAt && key.expiresAt <= new Date() ? `expired ${key.expiresAt.toISOString()}` : 'live',
    `expires ${key.expiresAt?.toISOString() ?? 'never'}`,
    `last used ${key.lastUsedAt?.toISOString() ?? 'never'}`,
  ].join('\t');

/** `phonevault apikey create|list|revoke`: the operator's way to the API keys, audited under the client `cli`. */
export function apiKeyCommands(cli: Command, env: Env, io: Io, run: (code: Promise<number> | number) => void): void {
  const apikey = cli.command('apikey').description('API keys, for services that cannot mint JWTs');
  apikey
    .command('create')
    .description('make a key and print it, once: only a keyed hash of it is kept')
    .requiredOption('--tenant <tenant>', 'the tenant its calls belong to')
    .requiredOption('--name <name>', 'the calling service: its client name in throttling and the audit trail')
    .requiredOption('--scope <scopes>', 'space-separated scopes, e.g. "tokenize detokenize:masked"')
    .option('--expires <duration>', 'stop working after this long, e.g. 90d (default: never)', lifetime)
    .action((options: { tenant: string; name: string; scope: string; expires?: number }) =>
      run(
        withVault(env, async (deps) => {
          const expiresAt = options.expires === undefined ? null : new Date(Date.now() + options.expires);
          const made = await createApiKey(deps, cliCaller(options.tenant), { name: options.name, scopes: options.scope.split(' ').filter(Boolean), expiresAt }, 'any');
          io.out(made.key);
          io.err(`API key ${made.id} for tenant ${made.tenant}, client ${made.name}, scopes ${made.scopes.join(' ')}: shown this once, keep it in a secret store`);
          return 0;
        }),
      ),
    );
  apikey
    .command('list')
    .description("list keys (never their text): id, tenant, name, scopes, state, expiry, last use")
    .option('--tenant <tenant>', 'only this tenant (audited under it)')
    .action((options: { tenant?: string }) =>
      run(
        withVault(env, async (deps) => {
          let after = '';
          for (;;) {
            const page = options.tenant ? await listApiKeys(deps, cliCaller(options.tenant), { after, limit: 1000 }) : await listAllApiKeys(deps, { after, limit: 1000 });
            for (const key of page.keys) io.out(line(key));
            if (!page.next) return 0;
            after = page.next;
          }
        }),
      ),
    );
  apikey
    .command('revoke')
    .description(`revoke a key: every instance refuses it within ${Math.ceil(REFRESH_MS / 1000) + 1} seconds`)
    .argument('<id>', 'the key id (from `apikey list`)', keyId)
    .action((id: string) => {
      run(
        withVault(env, async (deps) => {
          const revoked = await revokeApiKeyById(deps, cliCaller, id);
          io.out(`revoked ${revoked.id} (${revoked.name}, tenant ${revoked.tenant})`);
          return 0;
        }),
      );
    });
}
