import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AwsKmsSettings } from '../../src/config/index.js';

/** The aliases the seed file gives; each a key with what a test needs of it. */
export const KMS_ALIASES = {
  kek: 'alias/phonevault-kek',
  other: 'alias/other',
  imported: 'alias/imported',
  rsa: 'alias/rsa',
} as const;

export interface LocalKms {
  endpoint: string;
  region: string;
  /** The variables a vault needs for a key, beside the credentials the SDK's chain finds in the process. */
  env(keyId: string): Record<string, string>;
  settings(keyId: string): AwsKmsSettings;
  /** The server stops (an outage from outside the vault) and starts again on the same port and data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** The server stops answering but keeps its connections open (SIGSTOP), and answers again (SIGCONT). */
  pause(): void;
  resume(): void;
  drop(): Promise<void>;
}

/** local-kms, which .ci/run installs with `go install`: LOCAL_KMS, then PATH, then Go's bin folder. */
function binary(): string {
  if (process.env.LOCAL_KMS) return process.env.LOCAL_KMS;
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, 'local-kms'))) return join(dir, 'local-kms');
  let gopath = join(homedir(), 'go');
  try {
    gopath = execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim().split(':')[0]!;
  } catch {
    // No Go toolchain on PATH: its default GOPATH.
  }
  return join(gopath, 'bin', 'local-kms');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/**
 * A local-kms server of its own (a KMS-compatible server with real AES-GCM), seeded with the keys the tests need,
 * keeping its data in a temporary folder. Sets test credentials in this process's environment for the SDK's chain
 * (local-kms does not check signatures): one server per test file.
 */
export async function startLocalKms(): Promise<LocalKms> {
  const dir = mkdtempSync(join(tmpdir(), 'pv-kms-'));
  const region = 'eu-west-2';
  const hex = () => randomBytes(32).toString('hex');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  // Seeded keys carry no Origin unless given one; KMS itself sets AWS_KMS on every key it generates.
  const ids = { kek: randomUUID(), other: randomUUID(), imported: randomUUID(), rsa: randomUUID() };
  writeFileSync(
    join(dir, 'seed.yaml'),
    [
      'Keys:',
      '  Symmetric:',
      '    Aes:',
      `      - Metadata: { KeyId: ${ids.kek}, Origin: AWS_KMS }`,
      `        BackingKeys: [ ${hex()} ]`,
      `      - Metadata: { KeyId: ${ids.other}, Origin: AWS_KMS }`,
      `        BackingKeys: [ ${hex()} ]`,
      `      - Metadata: { KeyId: ${ids.imported}, Origin: EXTERNAL }`,
      `        BackingKeys: [ ${hex()} ]`,
      '  Asymmetric:',
      '    Rsa:',
      `      - Metadata: { KeyId: ${ids.rsa}, KeyUsage: ENCRYPT_DECRYPT }`,
      '        PrivateKeyPem: |',
      ...rsa.trim().split('\n').map((line) => `          ${line}`),
      'Aliases:',
      ...Object.entries(KMS_ALIASES).map(([name, alias]) => `  - { AliasName: ${alias}, TargetKeyId: ${ids[name as keyof typeof ids]} }`),
      '',
    ].join('\n'),
  );
  process.env.AWS_ACCESS_KEY_ID = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
  process.env.AWS_SECRET_ACCESS_KEY = randomBytes(30).toString('base64');
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;

  const start = async () => {
    child = spawn(binary(), [], {
      env: { PATH: process.env.PATH, PORT: String(port), KMS_REGION: region, KMS_DATA_PATH: join(dir, 'data'), KMS_SEED_PATH: join(dir, 'seed.yaml') },
      stdio: 'ignore',
    });
    const exited = new Promise<never>((_, reject) => child!.once('error', reject).once('exit', (code) => reject(new Error(`local-kms exited (${code})`))));
    const ready = (async () => {
      for (let i = 0; i < 200 && !(await answers(port)); i++) await new Promise((resolve) => setTimeout(resolve, 25));
    })();
    await Promise.race([ready, exited]);
    if (!(await answers(port))) throw new Error('local-kms did not start');
  };
  const stop = async () => {
    const running = child as ChildProcess | null;
    child = null;
    if (!running || running.exitCode !== null) return;
    running.kill('SIGCONT');
    await new Promise((resolve) => {
      running.once('exit', resolve);
      running.kill('SIGKILL');
    });
  };
  await start();
  return {
    endpoint,
    region,
    env: (keyId) => ({ KEK_PROVIDER: 'awskms', AWS_KMS_KEY_ID: keyId, AWS_REGION: region, AWS_ENDPOINT_URL_KMS: endpoint }),
    settings: (keyId) => ({ keyId, region, endpoint, kekId: 'kms' }),
    stop,
    start,
    pause: () => (child as ChildProcess | null)?.kill('SIGSTOP'),
    resume: () => (child as ChildProcess | null)?.kill('SIGCONT'),
    drop: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
