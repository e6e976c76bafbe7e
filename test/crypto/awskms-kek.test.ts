import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { CreateAliasCommand, CreateKeyCommand, DisableKeyCommand, EnableKeyCommand, KMSClient, ScheduleKeyDeletionCommand, CancelKeyDeletionCommand, UpdateAliasCommand, DescribeKeyCommand } from '@aws-sdk/client-kms';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsKmsKek } from '../../src/crypto/awskms-kek.js';
import { KekUnavailableError } from '../../src/crypto/kek.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase } from '../helpers/database.js';
import { expectBoundToItsKey, kekScenarios } from '../helpers/kek-scenarios.js';
import { KMS_ALIASES, startLocalKms, type LocalKms } from '../helpers/local-kms.js';

// Issue 16: the KEK in AWS KMS, tested against local-kms, a KMS-compatible server with real AES-GCM.
let kms: LocalKms;
beforeAll(async () => {
  kms = await startLocalKms();
});
afterAll(() => kms.drop());

const aad = Buffer.from('phonevault:test');

describe('the AWS KMS KEK', () => {
  it('wraps under the key and its context; any other key, context or a touched blob is refused, not unavailable', async () => {
    const kek = await AwsKmsKek.open(kms.settings(KMS_ALIASES.kek));
    const other = await AwsKmsKek.open(kms.settings(KMS_ALIASES.other));
    try {
      const raw = randomBytes(32);
      const [one, two] = [await kek.wrap(raw, aad), await kek.wrap(raw, aad)];
      expect(one.equals(two)).toBe(false);
      expect(one.includes(raw)).toBe(false);
      expect((await kek.unwrap(one, aad)).equals(raw)).toBe(true);
      const refusals = [
        () => kek.unwrap(one, Buffer.from('phonevault:other')),
        () => other.unwrap(one, aad),
        // From the end: local-kms's blob starts with the key's ARN, which it does not authenticate as KMS does
        // (Decrypt names the key), so a flipped bit there opens the same key's genuine data key, nothing else.
        ...[60, 30, 1].map((fromEnd) => () => {
          const tampered = Buffer.from(one);
          tampered[one.length - fromEnd]! ^= 1;
          return kek.unwrap(tampered, aad);
        }),
        () => kek.unwrap(one.subarray(0, one.length - 1), aad),
      ];
      for (const refusal of refusals) {
        const error = await refusal().then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(Error);
        expect(error).not.toBeInstanceOf(KekUnavailableError);
      }
      await expectBoundToItsKey(kek, raw);
    } finally {
      await kek.close();
      await other.close();
    }
  });
});

describe('the AWS KMS KEK while it runs', () => {
  let client: KMSClient;
  beforeAll(() => {
    client = new KMSClient({ region: kms.region, endpoint: kms.endpoint });
  });
  afterAll(() => client.destroy());
  const capture = () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (lines.push(...chunk.toString().split('\n').filter(Boolean).map((line: string) => JSON.parse(line))), done()) }));
    return { lines, logger };
  };
  const pause = () => new Promise((resolve) => setTimeout(resolve, 1_100));

  it('keeps using the key it started on when the alias is moved to another key', async () => {
    const kek = await AwsKmsKek.open(kms.settings(KMS_ALIASES.kek));
    const other = await AwsKmsKek.open(kms.settings(KMS_ALIASES.other));
    const { KeyMetadata } = await client.send(new DescribeKeyCommand({ KeyId: KMS_ALIASES.kek }));
    const { KeyMetadata: otherKey } = await client.send(new DescribeKeyCommand({ KeyId: KMS_ALIASES.other }));
    try {
      await client.send(new UpdateAliasCommand({ AliasName: KMS_ALIASES.kek, TargetKeyId: otherKey!.KeyId }));
      const blob = await kek.wrap(randomBytes(32), aad);
      await expect(other.unwrap(blob, aad)).rejects.toThrow(/refused/);
      expect((await kek.unwrap(blob, aad)).length).toBe(32);
    } finally {
      await client.send(new UpdateAliasCommand({ AliasName: KMS_ALIASES.kek, TargetKeyId: KeyMetadata!.KeyId }));
      await kek.close();
      await other.close();
    }
  });

  it('answers unavailable, with an error log line of its own, while the key is disabled or scheduled for deletion, and recovers', async () => {
    const { KeyMetadata } = await client.send(new CreateKeyCommand({}));
    const alias = `alias/state-${randomBytes(4).toString('hex')}`;
    await client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: KeyMetadata!.KeyId }));
    const { lines, logger } = capture();
    const kek = await AwsKmsKek.open(kms.settings(alias), logger);
    try {
      const blob = await kek.wrap(randomBytes(32), aad);
      for (const [away, back] of [
        [new DisableKeyCommand({ KeyId: KeyMetadata!.KeyId }), new EnableKeyCommand({ KeyId: KeyMetadata!.KeyId })],
        [new ScheduleKeyDeletionCommand({ KeyId: KeyMetadata!.KeyId, PendingWindowInDays: 7 }), new CancelKeyDeletionCommand({ KeyId: KeyMetadata!.KeyId })],
      ] as const) {
        await client.send(away as never);
        await expect(kek.unwrap(blob, aad)).rejects.toBeInstanceOf(KekUnavailableError);
        expect(lines.at(-1)).toMatchObject({ level: 50, kek: 'kms', msg: expect.stringContaining('KMS refuses to use the key-encryption key') });
        await client.send(back as never);
        if (back instanceof CancelKeyDeletionCommand) await client.send(new EnableKeyCommand({ KeyId: KeyMetadata!.KeyId }));
        await pause();
        expect((await kek.unwrap(blob, aad)).length).toBe(32);
        expect(lines.at(-1)).toMatchObject({ msg: 'key-encryption key reachable again' });
      }
    } finally {
      await kek.close();
    }
  });

  it('fails calls within its deadline when KMS stops answering, lets one probe through at a time, and recovers', async () => {
    const kek = await AwsKmsKek.open(kms.settings(KMS_ALIASES.kek));
    const blob = await kek.wrap(randomBytes(32), aad);
    kms.pause();
    try {
      const started = Date.now();
      const calls = await Promise.allSettled(Array.from({ length: 20 }, () => kek.unwrap(blob, aad)));
      expect(Date.now() - started).toBeLessThan(8_000);
      for (const call of calls) expect(call.status === 'rejected' && call.reason instanceof KekUnavailableError).toBe(true);
      // Down: the next calls fail at once, without waiting on KMS.
      const fast = Date.now();
      await expect(kek.unwrap(blob, aad)).rejects.toBeInstanceOf(KekUnavailableError);
      expect(Date.now() - fast).toBeLessThan(100);
    } finally {
      kms.resume();
    }
    await pause();
    expect((await kek.unwrap(blob, aad)).length).toBe(32);
    await kek.close();
  });
});

describe('start-up with KEK_PROVIDER=awskms', () => {
  let url: string;
  let drop: () => Promise<void>;
  let disabled: string;
  beforeAll(async () => {
    ({ url, drop } = await createTestDatabase());
    const client = new KMSClient({ region: kms.region, endpoint: kms.endpoint });
    const { KeyMetadata } = await client.send(new CreateKeyCommand({}));
    disabled = KeyMetadata!.KeyId!;
    await client.send(new DisableKeyCommand({ KeyId: disabled }));
    client.destroy();
  });
  afterAll(() => drop());

  const base = () => ({ DATABASE_URL: url, JWT_SECRET: randomBytes(32).toString('base64'), JWT_ISSUER: 'https://issuer.test', JWT_AUDIENCE: 'phonevault-test', PORT: '0' });

  it('stops, naming the setting and never printing a credential, for every wrong setting', async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    const closed = 'http://127.0.0.1:1';
    const cases: Array<[Record<string, string>, string]> = [
      [kms.env('alias/no-such-key'), 'AWS_KMS_KEY_ID: KMS has no key with that id or alias'],
      [kms.env(KMS_ALIASES.imported), 'AWS_KMS_KEY_ID: the key’s material was imported (Origin EXTERNAL)'],
      [kms.env(KMS_ALIASES.rsa), 'AWS_KMS_KEY_ID: the key is not a symmetric encryption key'],
      [kms.env(disabled), 'AWS_KMS_KEY_ID: the key is not enabled (Disabled)'],
      [{ ...kms.env(KMS_ALIASES.kek), AWS_ENDPOINT_URL_KMS: closed }, 'AWS_KMS_KEY_ID: KMS cannot be reached'],
      [{ ...kms.env(KMS_ALIASES.kek), AWS_ENDPOINT_URL_KMS: 'not a url' }, 'AWS_ENDPOINT_URL_KMS: must be a URL'],
      [{ ...kms.env(KMS_ALIASES.kek), AWS_ENDPOINT_URL_KMS: 'http://kms.example:4566' }, 'AWS_ENDPOINT_URL_KMS: must be https://'],
      [{ ...kms.env(KMS_ALIASES.kek), AWS_ENDPOINT_URL_KMS: 'file:///etc/passwd' }, 'AWS_ENDPOINT_URL_KMS: must be https://'],
      [{ ...kms.env(KMS_ALIASES.kek), AWS_ENDPOINT_URL_KMS: undefined as never, AWS_ENDPOINT_URL: 'https://user:hunter2@kms.example' }, 'AWS_ENDPOINT_URL: must not carry credentials'],
      // A token in the query of an endpoint that cannot be reached: the refusal names the setting, never the URL.
      [{ ...kms.env(KMS_ALIASES.kek), AWS_ENDPOINT_URL_KMS: 'https://127.0.0.1:1/?X-Amz-Security-Token=hunter2' }, 'AWS_KMS_KEY_ID: KMS cannot be reached'],
      [{ ...kms.env(''), AWS_KMS_KEY_ID: '' }, 'AWS_KMS_KEY_ID: is required'],
      [{ ...kms.env(KMS_ALIASES.kek), KEK_PROVIDER: 'awskms,env', VAULT_MASTER_KEY: `kms:${randomBytes(32).toString('base64')}` }, 'AWS_KMS_KEK_ID: is also the id of another configured KEK'],
      [{ AWS_KMS_KEY_ID: KMS_ALIASES.kek, VAULT_MASTER_KEY: randomBytes(32).toString('base64') }, 'AWS_KMS_KEY_ID: is set but KEK_PROVIDER does not list awskms'],
    ];
    // Settings of a provider not listed are not checked: an unrelated AWS_ENDPOINT_URL does not stop an env vault.
    const unrelated = await runCli(['sweep'], { DATABASE_URL: url, VAULT_MASTER_KEY: randomBytes(32).toString('base64'), AWS_ENDPOINT_URL: 'kms.eu-west-2.amazonaws.com' });
    expect(unrelated.err).not.toContain('AWS_ENDPOINT_URL');
    for (const [env, message] of cases) {
      const res = await runCli(['serve'], { ...base(), ...env });
      expect(res.code, message).toBe(78);
      expect(res.err, message).toContain(message);
      expect(res.err).not.toContain(process.env.AWS_SECRET_ACCESS_KEY);
      expect(res.err).not.toContain('hunter2');
    }
  });

  it('stops, naming the credentials, when the SDK’s chain finds none', async () => {
    // A process of its own: the SDK's chain reads the process environment, not the vault's configuration.
    const serve = (env: Record<string, string>) =>
      spawnSync(process.execPath, [new URL('../../bin/phonevault.js', import.meta.url).pathname, 'serve'], {
        env: { PATH: process.env.PATH, HOME: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true', ...base(), ...kms.env(KMS_ALIASES.kek), ...env },
        encoding: 'utf8',
        timeout: 30_000,
      });
    const none = serve({});
    expect(none.status).toBe(78);
    expect(none.stderr).toContain('AWS credentials: the AWS SDK found none');
  });
});

describe('an operator moving from an env key to a KMS key, online, and a KMS outage', () => {
  kekScenarios(() => ({
    provider: 'awskms',
    kekId: 'kms',
    env: kms.env(KMS_ALIASES.kek),
    config: { providers: ['awskms'], masterKeys: [], pkcs11: null, awskms: kms.settings(KMS_ALIASES.kek) },
    otherKeyEnv: kms.env(KMS_ALIASES.other),
    takeAway: () => kms.stop(),
    bringBack: () => kms.start(),
    secrets: [process.env.AWS_SECRET_ACCESS_KEY!, process.env.AWS_ACCESS_KEY_ID!],
  }));
});
