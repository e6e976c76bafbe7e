import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Pkcs11Settings } from '../config/kek.js';
import { KekSetupError, KekUnavailableError, type Kek } from './kek.js';
import { CKA, CKF_DECRYPT, CKF_ENCRYPT, CKK_AES, CKM_AES_GCM, CKO_SECRET_KEY, CKR, isSessionLost, Pkcs11Error, Pkcs11Module, type TokenSlot } from './pkcs11.js';

const IV_BYTES = 12;
const SENTINEL_AAD = Buffer.from('phonevault:pkcs11-sentinel:v1');
const TAG_BYTES = 16;
// A lost token is looked for again at most this often: an HSM that is down is not hammered by every request.
const RECONNECT_EVERY_MS = 1_000;

interface Connection {
  slot: bigint;
  session: bigint;
  key: bigint;
}

const asciiTrue = (value: Buffer | null | undefined) => value?.length === 1 && value[0] === 1;
const ulongOf = (value: Buffer | null | undefined) => (value && value.length === 8 ? Number(value.readBigUInt64LE()) : null);

/**
 * The KEK is an AES-256 key inside an HSM, reached through PKCS#11; it never leaves the token. Data keys are
 * sealed with CKM_AES_GCM on the token, a fresh random 96-bit IV each, bound to the same AAD as under the env
 * provider: a blob is IV ‖ ciphertext ‖ tag. The vault keeps one logged-in session and sends its calls one at a
 * time (a PKCS#11 session runs one operation at a time); a session or token that goes away is opened again on
 * the next call, at most once a second, so the provider recovers without a restart.
 */
export class Pkcs11Kek implements Kek {
  readonly id: string;
  readonly provider = 'pkcs11' as const;
  readonly #module: Pkcs11Module;
  readonly #settings: Pkcs11Settings;
  readonly #logger: Logger | undefined;
  #connection: Connection | null;
  #lastAttempt = 0;
  #queue: Promise<unknown> = Promise.resolve();
  /** A seal made at start-up: the key found on a reconnect must open it, or it is not the key this vault runs on. */
  #sentinel: Buffer = Buffer.alloc(0);
  /** Set when the token refused the PIN on a reconnect: trying again could lock the user PIN for every application. */
  #halted: string | null = null;

  private constructor(module: Pkcs11Module, settings: Pkcs11Settings, connection: Connection, logger: Logger | undefined) {
    this.id = settings.kekId;
    this.#module = module;
    this.#settings = settings;
    this.#connection = connection;
    this.#logger = logger;
  }

  /** Loads the module, finds the token, logs in, finds and checks the key; any failure stops start-up. */
  static async open(settings: Pkcs11Settings, logger?: Logger): Promise<Pkcs11Kek> {
    const module = loadModule(settings);
    try {
      const connection = await connect(module, settings);
      const kek = new Pkcs11Kek(module, settings, connection, logger);
      kek.#sentinel = await kek.wrap(Buffer.alloc(0), SENTINEL_AAD);
      return kek;
    } catch (error) {
      await module.finalize().catch(() => undefined);
      throw error;
    }
  }

  wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    return this.#serially(async ({ session, key }) => {
      const iv = randomBytes(IV_BYTES);
      return Buffer.concat([iv, await this.#module.gcmEncrypt(session, key, iv, aad, plaintext)]);
    });
  }

  unwrap(blob: Buffer, aad: Buffer): Promise<Buffer> {
    if (blob.length < IV_BYTES + TAG_BYTES) return Promise.reject(new Error('wrapped key is too short'));
    return this.#serially(({ session, key }) => this.#module.gcmDecrypt(session, key, blob.subarray(0, IV_BYTES), aad, blob.subarray(IV_BYTES)));
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => undefined);
    if (this.#connection) await this.#module.closeSession(this.#connection.session).catch(() => undefined);
    this.#connection = null;
    await this.#module.finalize().catch(() => undefined);
  }

  /** Runs `call` after every earlier one, on a live session; a lost session is opened again and the call retried once. */
  #serially<T>(call: (connection: Connection) => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      for (let attempt = 0; ; attempt++) {
        const connection = await this.#live();
        try {
          return await call(connection);
        } catch (error) {
          // A token that refuses a blob it should open may be failing as a whole (network HSM clients report a
          // lost link as CKR_GENERAL_ERROR or CKR_FUNCTION_FAILED): the sentinel tells a bad blob from a bad device.
          if (!lost(error) && (await this.#opensSentinel(connection))) throw refused(error);
          this.#drop(error);
          if (attempt > 0) throw new KekUnavailableError(this.id, describe(error));
          this.#lastAttempt = 0;
        }
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #opensSentinel(connection: Connection): Promise<boolean> {
    try {
      await this.#module.gcmDecrypt(connection.session, connection.key, this.#sentinel.subarray(0, IV_BYTES), SENTINEL_AAD, this.#sentinel.subarray(IV_BYTES));
      return true;
    } catch {
      return false;
    }
  }

  async #live(): Promise<Connection> {
    if (this.#connection) return this.#connection;
    if (this.#halted) throw new KekUnavailableError(this.id, this.#halted);
    if (Date.now() - this.#lastAttempt < RECONNECT_EVERY_MS) throw new KekUnavailableError(this.id, 'the token was lost; reconnecting');
    this.#lastAttempt = Date.now();
    let connection: Connection;
    try {
      connection = await connect(this.#module, this.#settings).catch(async (error: unknown) => {
        if (error instanceof PinRefused) throw error;
        // A token that went away and came back may be seen only by a module initialised again.
        await this.#module.reset();
        return connect(this.#module, this.#settings);
      });
    } catch (error) {
      if (error instanceof PinRefused) {
        this.#halted = `${error.message}; not retried (a retry could lock the PIN): restart with the right PIN`;
        this.#logger?.error({ kek: this.id, reason: this.#halted }, 'key-encryption key unavailable until restart');
      }
      throw new KekUnavailableError(this.id, describe(error));
    }
    if (!(await this.#opensSentinel(connection))) {
      // Another key under the same label (a token replaced, a key re-imported): never wrap with it.
      await this.#module.closeSession(connection.session).catch(() => undefined);
      this.#logger?.error({ kek: this.id }, 'the key found under PKCS11_KEY_LABEL is not the one this vault started with; not used');
      throw new KekUnavailableError(this.id, 'the key under PKCS11_KEY_LABEL is not the one this vault started with');
    }
    this.#connection = connection;
    this.#logger?.info({ kek: this.id }, 'key-encryption key reachable again');
    return connection;
  }

  #drop(error: unknown): void {
    if (!this.#connection) return;
    this.#logger?.warn({ kek: this.id, reason: describe(error) }, 'key-encryption key unreachable; the session will be opened again');
    void this.#module.closeSession(this.#connection.session).catch(() => undefined);
    this.#connection = null;
  }
}

/** Whether the failure means the HSM, token or session went away (or the binding failed), not that the blob was refused. */
function lost(error: unknown): boolean {
  if (error instanceof Pkcs11Error) return isSessionLost(error.rv);
  return !(error instanceof Error && error.message === 'wrapped key is too short');
}

function refused(error: unknown): Error {
  // The token would not open the blob (a wrong key, a tampered blob, a wrong AAD): as a failed GCM tag would be.
  return error instanceof Pkcs11Error ? new Error(`the HSM refused the wrapped key (${error.fn} 0x${error.rv.toString(16)})`) : (error as Error);
}

function describe(error: unknown): string {
  if (error instanceof Pkcs11Error || error instanceof KekSetupError) return error.message;
  return (error as Error)?.name ?? 'error';
}

function loadModule(settings: Pkcs11Settings): Pkcs11Module {
  try {
    return Pkcs11Module.open(settings.module);
  } catch {
    throw new KekSetupError('PKCS11_MODULE: the PKCS#11 library cannot be loaded or initialised (check the path and that it is the HSM vendor’s module)');
  }
}

/** The token refused the PIN: never retried on its own, since each try counts towards locking it. */
class PinRefused extends KekSetupError {}

const PIN_REFUSALS: Record<number, string> = {
  [CKR.PIN_INCORRECT]: 'PKCS11_PIN / PKCS11_PIN_FILE: the token refused the PIN',
  [CKR.PIN_LEN_RANGE]: 'PKCS11_PIN / PKCS11_PIN_FILE: the token refused the PIN (wrong length)',
  [CKR.PIN_LOCKED]: 'PKCS11_PIN / PKCS11_PIN_FILE: the token’s user PIN is locked',
};

async function login(module: Pkcs11Module, session: bigint, pin: Buffer): Promise<void> {
  try {
    await module.login(session, pin);
  } catch (error) {
    const refusal = error instanceof Pkcs11Error ? PIN_REFUSALS[error.rv] : undefined;
    throw refusal ? new PinRefused(refusal) : error;
  }
}

async function findSlot(module: Pkcs11Module, settings: Pkcs11Settings): Promise<TokenSlot> {
  const tokens = await module.tokens();
  if (settings.slot !== null) {
    const slot = tokens.find((token) => token.slot === settings.slot);
    if (!slot) throw new KekSetupError('PKCS11_SLOT: no token is present in that slot');
    return slot;
  }
  const matching = tokens.filter((token) => token.label === settings.tokenLabel);
  if (matching.length === 0) throw new KekSetupError('PKCS11_TOKEN_LABEL: no token has that label');
  if (matching.length > 1) throw new KekSetupError('PKCS11_TOKEN_LABEL: several tokens have that label; use PKCS11_SLOT');
  return matching[0]!;
}

async function connect(module: Pkcs11Module, settings: Pkcs11Settings): Promise<Connection> {
  const { slot } = await findSlot(module, settings);
  const flags = await module.mechanismFlags(slot, CKM_AES_GCM);
  if (flags === null || (flags & (CKF_ENCRYPT | CKF_DECRYPT)) !== (CKF_ENCRYPT | CKF_DECRYPT)) {
    throw new KekSetupError('PKCS11_TOKEN_LABEL / PKCS11_SLOT: the token does not offer CKM_AES_GCM for encryption and decryption, which this provider needs');
  }
  const session = await module.openSession(slot);
  try {
    await login(module, session, settings.pin);
    const keys = await module.findObjects(session, [
      [CKA.CLASS, CKO_SECRET_KEY],
      [CKA.LABEL, Buffer.from(settings.keyLabel, 'utf8')],
    ]);
    if (keys.length === 0) throw new KekSetupError('PKCS11_KEY_LABEL: the token holds no secret key with that label (create one with `phonevault kek create`)');
    if (keys.length > 1) throw new KekSetupError('PKCS11_KEY_LABEL: several secret keys on the token have that label; give the KEK a label of its own');
    const key = keys[0]!;
    const attributes = await module.attributes(session, key, [CKA.KEY_TYPE, CKA.VALUE_LEN, CKA.SENSITIVE, CKA.EXTRACTABLE, CKA.ALWAYS_SENSITIVE, CKA.NEVER_EXTRACTABLE, CKA.ENCRYPT, CKA.DECRYPT]);
    if (ulongOf(attributes[CKA.KEY_TYPE]) !== CKK_AES || ulongOf(attributes[CKA.VALUE_LEN]) !== 32) throw new KekSetupError('PKCS11_KEY_LABEL: the key is not an AES-256 key');
    if (!asciiTrue(attributes[CKA.SENSITIVE]) || attributes[CKA.EXTRACTABLE] === null || asciiTrue(attributes[CKA.EXTRACTABLE])) {
      throw new KekSetupError('PKCS11_KEY_LABEL: the key is extractable or not sensitive; a KEK must never be able to leave the HSM (create it with CKA_SENSITIVE true and CKA_EXTRACTABLE false)');
    }
    // A key that was ever readable (imported, or made extractable and locked later) has existed outside the HSM.
    if (!asciiTrue(attributes[CKA.ALWAYS_SENSITIVE]) || !asciiTrue(attributes[CKA.NEVER_EXTRACTABLE])) {
      throw new KekSetupError('PKCS11_KEY_LABEL: the key has not always been sensitive and never extractable (it was imported, or made readable once); generate the KEK inside the HSM');
    }
    if (!asciiTrue(attributes[CKA.ENCRYPT]) || !asciiTrue(attributes[CKA.DECRYPT])) throw new KekSetupError('PKCS11_KEY_LABEL: the key may not encrypt and decrypt');
    return { slot, session, key };
  } catch (error) {
    await module.closeSession(session).catch(() => undefined);
    throw error;
  }
}

/**
 * Creates the KEK on the token: AES-256, generated inside the HSM, sensitive and never extractable, a token
 * object, private (visible only after login). Refuses when a key with the label exists.
 */
export async function createPkcs11Kek(settings: Pkcs11Settings): Promise<void> {
  const module = loadModule(settings);
  try {
    const { slot } = await findSlot(module, settings);
    const session = await module.openSession(slot, true);
    try {
      await login(module, session, settings.pin);
      const label = Buffer.from(settings.keyLabel, 'utf8');
      if ((await module.findObjects(session, [[CKA.CLASS, CKO_SECRET_KEY], [CKA.LABEL, label]])).length > 0) {
        throw new KekSetupError('PKCS11_KEY_LABEL: the token already holds a key with that label');
      }
      await module.generateAesKey(session, [
        [CKA.CLASS, CKO_SECRET_KEY],
        [CKA.KEY_TYPE, CKK_AES],
        [CKA.VALUE_LEN, 32],
        [CKA.LABEL, label],
        [CKA.TOKEN, true],
        [CKA.PRIVATE, true],
        [CKA.SENSITIVE, true],
        [CKA.EXTRACTABLE, false],
        [CKA.ENCRYPT, true],
        [CKA.DECRYPT, true],
      ]);
    } finally {
      await module.closeSession(session).catch(() => undefined);
    }
  } finally {
    await module.finalize().catch(() => undefined);
  }
}
