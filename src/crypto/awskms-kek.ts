import { DecryptCommand, DescribeKeyCommand, EncryptCommand, KMSClient, type KeyMetadata } from '@aws-sdk/client-kms';
import type { Logger } from 'pino';
import type { AwsKmsSettings } from '../config/kek.js';
import { KekSetupError, KekUnavailableError, type Kek } from './kek.js';

const SENTINEL_AAD = Buffer.from('phonevault:awskms-sentinel:v1');
// KMS's answers to a blob it will not open under this key and context (or a blob it cannot parse): the blob is
// refused, KMS is not down.
const REFUSALS = new Set(['InvalidCiphertextException', 'IncorrectKeyException', 'ValidationException']);
// KMS answers but will not use the key: disabled, pending deletion, deleted, or the grant taken away. An outage
// of this KEK, and one an operator (or an attacker with KMS rights) caused: logged as an error of its own.
const KEY_REFUSED = new Set(['DisabledException', 'KMSInvalidStateException', 'NotFoundException', 'AccessDeniedException', 'KeyUnavailableException']);
// Too many requests: this call fails, but KMS is up; the others are not held back.
const THROTTLED = new Set(['ThrottlingException', 'LimitExceededException']);
// Where the key material was made: inside KMS, its CloudHSM key store or an external key store, never imported.
const GENERATED_INSIDE = new Set(['AWS_KMS', 'AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE']);
// After a failure, one call at a time probes KMS, at most this often: requests for uncached tenants fail fast
// meanwhile, rather than each wait out the SDK's retries against a KMS that is down.
const RETRY_EVERY_MS = 1_000;
// A call, its retries included, gets this long: a KMS that accepts connections and never answers fails the call
// as unavailable rather than hold it (the SDK's requestTimeout alone only warns, unless told to throw).
const CALL_DEADLINE_MS = 5_000;

interface AwsError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/**
 * The KEK is a symmetric key in AWS KMS; it never leaves KMS. Data keys are sealed with KMS Encrypt, the AAD
 * passed as the encryption context (KMS binds it to the ciphertext and records it in CloudTrail), and opened
 * with Decrypt naming the key, so a blob made under any other key is refused. The key is resolved to its ARN
 * once at start-up: an alias moved later to another key is not followed by a running vault. Credentials come
 * from the AWS SDK's own chain (environment, shared config, web identity, container or instance role); the SDK
 * retries and re-signs each call, so the provider recovers from an outage without a restart.
 */
export class AwsKmsKek implements Kek {
  readonly id: string;
  readonly provider = 'awskms' as const;
  readonly #client: KMSClient;
  readonly #arn: string;
  readonly #logger: Logger | undefined;
  #up = true;
  #downSince = 0;
  #probing = false;
  #lastSuccess = 0;

  private constructor(client: KMSClient, settings: AwsKmsSettings, arn: string, logger: Logger | undefined) {
    this.id = settings.kekId;
    this.#client = client;
    this.#arn = arn;
    this.#logger = logger;
  }

  /** Finds and checks the key, then seals and opens a sentinel (DescribeKey alone does not prove Encrypt and Decrypt are granted). */
  static async open(settings: AwsKmsSettings, logger?: Logger): Promise<AwsKmsKek> {
    const client = new KMSClient({
      ...(settings.region ? { region: settings.region } : {}),
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 1_000, requestTimeout: 2_000, throwOnRequestTimeout: true },
    });
    try {
      const described = await client.send(new DescribeKeyCommand({ KeyId: settings.keyId }), deadline()).catch((error: unknown) => {
        throw setupError(error);
      });
      const arn = checkedArn(described.KeyMetadata);
      const sentinel = await client.send(new EncryptCommand({ KeyId: arn, Plaintext: Buffer.from([0]), EncryptionContext: context(SENTINEL_AAD) }), deadline()).catch((error: unknown) => {
        throw setupError(error);
      });
      const opened = await client.send(new DecryptCommand({ KeyId: arn, CiphertextBlob: sentinel.CiphertextBlob, EncryptionContext: context(SENTINEL_AAD) }), deadline()).catch((error: unknown) => {
        throw setupError(error);
      });
      if (opened.Plaintext?.length !== 1 || opened.Plaintext[0] !== 0) throw new KekSetupError('AWS_KMS_KEY_ID: KMS did not give back what it sealed; it is not a working KMS');
      return new AwsKmsKek(client, settings, arn, logger);
    } catch (error) {
      client.destroy();
      throw error;
    }
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    const sealed = await this.#call(() => this.#client.send(new EncryptCommand({ KeyId: this.#arn, Plaintext: plaintext, EncryptionContext: context(aad) }), deadline()));
    return Buffer.from(sealed.CiphertextBlob!);
  }

  async unwrap(blob: Buffer, aad: Buffer): Promise<Buffer> {
    const opened = await this.#call(() =>
      this.#client.send(new DecryptCommand({ KeyId: this.#arn, CiphertextBlob: blob, EncryptionContext: context(aad), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' }), deadline()),
    );
    const plaintext = opened.Plaintext!;
    const copy = Buffer.from(plaintext);
    plaintext.fill(0);
    return copy;
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  async #call<T>(call: () => Promise<T>): Promise<T> {
    const startedAt = Date.now();
    const probe = !this.#up;
    if (probe && (this.#probing || startedAt - this.#downSince < RETRY_EVERY_MS)) throw new KekUnavailableError(this.id, 'KMS was unreachable; probed at most once a second');
    if (probe) this.#probing = true;
    let result: T;
    try {
      result = await call();
    } catch (error) {
      const name = (error as AwsError)?.name ?? 'Error';
      // The wrong key, context or a tampered blob: as a failed GCM tag would be.
      if (REFUSALS.has(name)) throw new Error(`KMS refused the wrapped key (${name})`);
      const reason = describe(error);
      // A throttled call, or one that began before the last success, says nothing about KMS now.
      if (!THROTTLED.has(name) && startedAt >= this.#lastSuccess) {
        if (this.#up && KEY_REFUSED.has(name)) this.#logger?.error({ kek: this.id, reason }, 'KMS refuses to use the key-encryption key: it was disabled, scheduled for deletion or deleted, or access to it was taken away');
        else if (this.#up) this.#logger?.warn({ kek: this.id, reason }, 'key-encryption key unreachable');
        this.#up = false;
        this.#downSince = Date.now();
      }
      throw new KekUnavailableError(this.id, reason);
    } finally {
      if (probe) this.#probing = false;
    }
    if (!this.#up) this.#logger?.info({ kek: this.id }, 'key-encryption key reachable again');
    this.#up = true;
    this.#lastSuccess = Date.now();
    return result;
  }
}

const deadline = () => ({ abortSignal: AbortSignal.timeout(CALL_DEADLINE_MS) });

/** The encryption context KMS binds to the ciphertext: the same AAD as every other provider seals under. */
function context(aad: Buffer): Record<string, string> {
  return { 'phonevault:aad': aad.toString('base64url') };
}

/** The error's class, system code and HTTP status, never its message (which can carry an account's ARN or a principal). */
function describe(error: unknown): string {
  const { name, code, $metadata } = (error ?? {}) as AwsError;
  const detail = [typeof code === 'string' && /^E[A-Z]+$/.test(code) ? code : null, $metadata?.httpStatusCode ? `HTTP ${$metadata.httpStatusCode}` : null].filter(Boolean);
  return `${name ?? 'Error'}${detail.length ? ` (${detail.join(', ')})` : ''}`;
}

function checkedArn(metadata: KeyMetadata | undefined): string {
  if (!metadata?.Arn) throw new KekSetupError('AWS_KMS_KEY_ID: KMS described no key');
  if (metadata.KeyState !== 'Enabled') throw new KekSetupError(`AWS_KMS_KEY_ID: the key is not enabled (${metadata.KeyState ?? 'state unknown'})`);
  if (metadata.KeySpec !== 'SYMMETRIC_DEFAULT' || metadata.KeyUsage !== 'ENCRYPT_DECRYPT') {
    throw new KekSetupError('AWS_KMS_KEY_ID: the key is not a symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT)');
  }
  if (!GENERATED_INSIDE.has(metadata.Origin ?? '')) {
    // As with an HSM key: material imported into KMS has existed outside it.
    throw new KekSetupError('AWS_KMS_KEY_ID: the key’s material was imported (Origin EXTERNAL); create the KEK inside KMS');
  }
  return metadata.Arn;
}

/** What to fix when KMS cannot be used at start-up; names a setting, never a credential. */
function setupError(error: unknown): KekSetupError {
  const { name = 'Error', message = '' } = (error ?? {}) as AwsError;
  if (name === 'NotFoundException') return new KekSetupError('AWS_KMS_KEY_ID: KMS has no key with that id or alias in this region and account');
  if (name === 'AccessDeniedException') return new KekSetupError('AWS_KMS_KEY_ID: KMS denied access: the credentials need kms:DescribeKey, kms:Encrypt and kms:Decrypt on the key');
  if (name === 'CredentialsProviderError') {
    return new KekSetupError('AWS credentials: the AWS SDK found none (environment, shared config or AWS_PROFILE, web identity, container or instance role)');
  }
  if (['UnrecognizedClientException', 'InvalidSignatureException', 'ExpiredTokenException', 'InvalidClientTokenId'].includes(name)) {
    return new KekSetupError(`AWS credentials: KMS refused the credentials the AWS SDK found (${name})`);
  }
  if (/region is missing/i.test(message)) return new KekSetupError('AWS_REGION: the AWS SDK has no region (set AWS_REGION, or a region in the profile)');
  return new KekSetupError(`AWS_KMS_KEY_ID: KMS cannot be reached (${describe(error)}); check AWS_REGION, AWS_ENDPOINT_URL_KMS and the network`);
}
