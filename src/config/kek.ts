import { z } from 'zod';
import type { KekProvider } from '../crypto/kek.js';
import { parseMasterKeys, type MasterKey } from '../crypto/master-keys.js';
import { list } from './values.js';

export interface Pkcs11Settings {
  /** The PKCS#11 module (the HSM vendor's library; SoftHSM2's for tests). */
  module: string;
  /** The token, by label or by slot id: exactly one is set. */
  tokenLabel: string | null;
  slot: bigint | null;
  /** The user PIN, from PKCS11_PIN or PKCS11_PIN_FILE; never logged, never on argv. */
  pin: Buffer;
  /** The label of the AES-256 key on the token. */
  keyLabel: string;
  /** The id stored beside every key it wraps. */
  kekId: string;
}

export interface AwsKmsSettings {
  /** The KMS key: id, ARN, alias name (`alias/…`) or alias ARN. */
  keyId: string;
  /** AWS_REGION (or AWS_DEFAULT_REGION); null leaves it to the SDK's shared config. */
  region: string | null;
  /** AWS_ENDPOINT_URL_KMS (or AWS_ENDPOINT_URL): a VPC endpoint, or a KMS-compatible server; null for AWS's own. */
  endpoint: string | null;
  kekId: string;
}

export interface KekConfig {
  /** In order: the first provider's first key is active; the rest only unwrap. */
  providers: KekProvider[];
  /** VAULT_MASTER_KEY's keys, when `env` is listed; else empty. */
  masterKeys: MasterKey[];
  pkcs11: Pkcs11Settings | null;
  awskms: AwsKmsSettings | null;
}

const KEK_ID = /^[A-Za-z0-9_-]{1,32}$/;

export const kekShape = {
  KEK_PROVIDER: list('env').pipe(
    z
      .array(z.enum(['env', 'pkcs11', 'awskms'], { message: 'each provider is env, pkcs11 or awskms' }))
      .min(1, { message: 'list at least one provider' })
      .refine((providers) => new Set(providers).size === providers.length, { message: 'a provider is listed twice' }),
  ),
  VAULT_MASTER_KEY: z.string().optional(),
  PKCS11_MODULE: z.string().optional(),
  PKCS11_TOKEN_LABEL: z.string().optional(),
  PKCS11_SLOT: z.string().optional(),
  PKCS11_PIN: z.string().optional(),
  PKCS11_KEY_LABEL: z.string().optional(),
  PKCS11_KEK_ID: z.string().default('hsm'),
  AWS_KMS_KEY_ID: z.string().optional(),
  AWS_KMS_KEK_ID: z.string().default('kms'),
  // Read here rather than by the SDK so that the configuration is one object (the credentials stay the SDK's own chain).
  AWS_REGION: z.string().optional(),
  AWS_DEFAULT_REGION: z.string().optional(),
  AWS_ENDPOINT_URL_KMS: z.string().optional(),
  AWS_ENDPOINT_URL: z.string().optional(),
};

type KekInput = z.output<z.ZodObject<typeof kekShape>>;

const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** Data keys cross this connection in the clear inside TLS: https, or plain http only to this host (a test server). */
function kmsEndpointProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be a URL';
  }
  if (url.username || url.password) return 'must not carry credentials (the AWS SDK’s chain provides them)';
  if (url.protocol === 'https:') return null;
  if (url.protocol === 'http:' && LOOPBACK.has(url.hostname)) return null;
  return 'must be https:// (plain http:// only to 127.0.0.1, ::1 or localhost)';
}

/** The KEK settings, or the problems with them; messages name the variable, never a value. */
export function kekConfigOf(parsed: KekInput, problems: string[]): KekConfig {
  const providers = parsed.KEK_PROVIDER;
  let masterKeys: MasterKey[] = [];
  if (providers.includes('env')) {
    if (!parsed.VAULT_MASTER_KEY) problems.push('VAULT_MASTER_KEY: is required (KEK_PROVIDER lists env)');
    else {
      try {
        masterKeys = parseMasterKeys(parsed.VAULT_MASTER_KEY);
      } catch (error) {
        problems.push(`VAULT_MASTER_KEY: ${(error as Error).message}`);
      }
    }
  } else if (parsed.VAULT_MASTER_KEY) {
    // A key left in the environment after moving to an HSM is the key the move was meant to retire.
    problems.push('VAULT_MASTER_KEY: is set but KEK_PROVIDER does not list env; remove it, or list env to use it');
  }
  let pkcs11: Pkcs11Settings | null = null;
  const pkcs11Names = ['PKCS11_MODULE', 'PKCS11_TOKEN_LABEL', 'PKCS11_SLOT', 'PKCS11_PIN', 'PKCS11_KEY_LABEL'] as const;
  if (providers.includes('pkcs11')) {
    const before = problems.length;
    if (!parsed.PKCS11_MODULE) problems.push('PKCS11_MODULE: is required (KEK_PROVIDER lists pkcs11): the path of the HSM’s PKCS#11 library');
    if (!parsed.PKCS11_TOKEN_LABEL === !parsed.PKCS11_SLOT) problems.push('PKCS11_TOKEN_LABEL or PKCS11_SLOT: set exactly one');
    if (parsed.PKCS11_SLOT && !/^\d{1,20}$/.test(parsed.PKCS11_SLOT)) problems.push('PKCS11_SLOT: must be a slot id (a whole number)');
    if (!parsed.PKCS11_PIN) problems.push('PKCS11_PIN or PKCS11_PIN_FILE: is required (KEK_PROVIDER lists pkcs11)');
    if (!parsed.PKCS11_KEY_LABEL) problems.push('PKCS11_KEY_LABEL: is required (KEK_PROVIDER lists pkcs11)');
    if (!KEK_ID.test(parsed.PKCS11_KEK_ID)) problems.push('PKCS11_KEK_ID: must be 1-32 of A-Z a-z 0-9 _ -');
    if (masterKeys.some((key) => key.id === parsed.PKCS11_KEK_ID)) problems.push('PKCS11_KEK_ID: is also the id of a key in VAULT_MASTER_KEY; give each KEK its own id');
    if (problems.length === before) {
      pkcs11 = {
        module: parsed.PKCS11_MODULE!,
        tokenLabel: parsed.PKCS11_TOKEN_LABEL || null,
        slot: parsed.PKCS11_SLOT ? BigInt(parsed.PKCS11_SLOT) : null,
        pin: Buffer.from(parsed.PKCS11_PIN!, 'utf8'),
        keyLabel: parsed.PKCS11_KEY_LABEL!,
        kekId: parsed.PKCS11_KEK_ID,
      };
    }
  } else {
    for (const name of pkcs11Names) if (parsed[name]) problems.push(`${name}: is set but KEK_PROVIDER does not list pkcs11`);
  }
  let awskms: AwsKmsSettings | null = null;
  if (providers.includes('awskms')) {
    const before = problems.length;
    if (!parsed.AWS_KMS_KEY_ID) problems.push('AWS_KMS_KEY_ID: is required (KEK_PROVIDER lists awskms): the KMS key id, ARN or alias/name');
    if (!KEK_ID.test(parsed.AWS_KMS_KEK_ID)) problems.push('AWS_KMS_KEK_ID: must be 1-32 of A-Z a-z 0-9 _ -');
    const taken = [...masterKeys.map((key) => key.id), ...(pkcs11 ? [pkcs11.kekId] : [])];
    if (taken.includes(parsed.AWS_KMS_KEK_ID)) problems.push('AWS_KMS_KEK_ID: is also the id of another configured KEK; give each KEK its own id');
    const endpointName = parsed.AWS_ENDPOINT_URL_KMS ? 'AWS_ENDPOINT_URL_KMS' : 'AWS_ENDPOINT_URL';
    const endpoint = parsed.AWS_ENDPOINT_URL_KMS || parsed.AWS_ENDPOINT_URL;
    const endpointProblem = endpoint ? kmsEndpointProblem(endpoint) : null;
    if (endpointProblem) problems.push(`${endpointName}: ${endpointProblem}`);
    if (problems.length === before) {
      awskms = {
        keyId: parsed.AWS_KMS_KEY_ID!,
        region: parsed.AWS_REGION || parsed.AWS_DEFAULT_REGION || null,
        endpoint: parsed.AWS_ENDPOINT_URL_KMS || parsed.AWS_ENDPOINT_URL || null,
        kekId: parsed.AWS_KMS_KEK_ID,
      };
    }
  } else if (parsed.AWS_KMS_KEY_ID) {
    problems.push('AWS_KMS_KEY_ID: is set but KEK_PROVIDER does not list awskms');
  }
  return { providers, masterKeys, pkcs11, awskms };
}
