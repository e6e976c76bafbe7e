import koffi from 'koffi';

/**
 * A thin binding of the PKCS#11 (Cryptoki 2.40) calls the vault needs, over koffi's FFI: the module is loaded
 * by path and reached through its function list, as the standard requires. Structures are laid out by hand in
 * native memory (CK_ULONG and pointers are 8 bytes on the 64-bit Unix ABIs this runs on). Calls that do
 * cryptography or talk to the token run on koffi's worker threads, so that a slow or hung HSM never blocks the
 * event loop; the caller serialises calls on a session.
 */

export const CKR = {
  OK: 0x0,
  DEVICE_ERROR: 0x30,
  DEVICE_MEMORY: 0x31,
  DEVICE_REMOVED: 0x32,
  ENCRYPTED_DATA_INVALID: 0x40,
  ENCRYPTED_DATA_LEN_RANGE: 0x41,
  KEY_HANDLE_INVALID: 0x60,
  OBJECT_HANDLE_INVALID: 0x82,
  PIN_INCORRECT: 0xa0,
  PIN_LEN_RANGE: 0xa2,
  PIN_LOCKED: 0xa4,
  SESSION_CLOSED: 0xb0,
  SESSION_HANDLE_INVALID: 0xb3,
  TOKEN_NOT_PRESENT: 0xe0,
  TOKEN_NOT_RECOGNIZED: 0xe1,
  USER_ALREADY_LOGGED_IN: 0x100,
  USER_NOT_LOGGED_IN: 0x101,
  BUFFER_TOO_SMALL: 0x150,
  CRYPTOKI_NOT_INITIALIZED: 0x190,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
} as const;

export const CKA = {
  CLASS: 0x0,
  TOKEN: 0x1,
  PRIVATE: 0x2,
  LABEL: 0x3,
  KEY_TYPE: 0x100,
  ID: 0x102,
  SENSITIVE: 0x103,
  ENCRYPT: 0x104,
  DECRYPT: 0x105,
  VALUE_LEN: 0x161,
  EXTRACTABLE: 0x162,
  NEVER_EXTRACTABLE: 0x164,
  ALWAYS_SENSITIVE: 0x165,
} as const;

export const CKO_SECRET_KEY = 0x4;
export const CKK_AES = 0x1f;
export const CKM_AES_KEY_GEN = 0x1080;
export const CKM_AES_GCM = 0x1087;
export const CKF_ENCRYPT = 0x100;
export const CKF_DECRYPT = 0x200;
const CKF_RW_SESSION = 0x2;
const CKF_SERIAL_SESSION = 0x4;
const CKF_OS_LOCKING_OK = 0x2;
const CKU_USER = 1;
const CK_UNAVAILABLE_INFORMATION = 0xffffffffffffffffn;

/** A PKCS#11 call that returned something other than CKR_OK; `rv` is the return value, never data. */
export class Pkcs11Error extends Error {
  readonly rv: number;
  readonly fn: string;

  constructor(fn: string, rv: number) {
    super(`${fn} returned 0x${rv.toString(16)}`);
    this.name = 'Pkcs11Error';
    this.fn = fn;
    this.rv = rv;
  }
}

// The CK_FUNCTION_LIST's members, in the standard's order; only the ones the vault calls are given types.
const FUNCTIONS = [
  'C_Initialize', 'C_Finalize', 'C_GetInfo', 'C_GetFunctionList', 'C_GetSlotList', 'C_GetSlotInfo', 'C_GetTokenInfo',
  'C_GetMechanismList', 'C_GetMechanismInfo', 'C_InitToken', 'C_InitPIN', 'C_SetPIN', 'C_OpenSession', 'C_CloseSession',
  'C_CloseAllSessions', 'C_GetSessionInfo', 'C_GetOperationState', 'C_SetOperationState', 'C_Login', 'C_Logout',
  'C_CreateObject', 'C_CopyObject', 'C_DestroyObject', 'C_GetObjectSize', 'C_GetAttributeValue', 'C_SetAttributeValue',
  'C_FindObjectsInit', 'C_FindObjects', 'C_FindObjectsFinal', 'C_EncryptInit', 'C_Encrypt', 'C_EncryptUpdate',
  'C_EncryptFinal', 'C_DecryptInit', 'C_Decrypt', 'C_DecryptUpdate', 'C_DecryptFinal', 'C_DigestInit', 'C_Digest',
  'C_DigestUpdate', 'C_DigestKey', 'C_DigestFinal', 'C_SignInit', 'C_Sign', 'C_SignUpdate', 'C_SignFinal',
  'C_SignRecoverInit', 'C_SignRecover', 'C_VerifyInit', 'C_Verify', 'C_VerifyUpdate', 'C_VerifyFinal',
  'C_VerifyRecoverInit', 'C_VerifyRecover', 'C_DigestEncryptUpdate', 'C_DecryptDigestUpdate', 'C_SignEncryptUpdate',
  'C_DecryptVerifyUpdate', 'C_GenerateKey', 'C_GenerateKeyPair', 'C_WrapKey', 'C_UnwrapKey', 'C_DeriveKey',
  'C_SeedRandom', 'C_GenerateRandom', 'C_GetFunctionStatus', 'C_CancelFunction', 'C_WaitForSlotEvent',
] as const;

// Every argument is a CK_ULONG (handles, counts, flags) or a pointer to memory laid out here.
const PROTOTYPES = {
  C_Initialize: 'unsigned long C_Initialize(void *args)',
  C_Finalize: 'unsigned long C_Finalize(void *reserved)',
  C_GetSlotList: 'unsigned long C_GetSlotList(uint8_t tokenPresent, void *slots, void *count)',
  C_GetTokenInfo: 'unsigned long C_GetTokenInfo(unsigned long slot, void *info)',
  C_GetMechanismInfo: 'unsigned long C_GetMechanismInfo(unsigned long slot, unsigned long type, void *info)',
  C_OpenSession: 'unsigned long C_OpenSession(unsigned long slot, unsigned long flags, void *app, void *notify, void *session)',
  C_CloseSession: 'unsigned long C_CloseSession(unsigned long session)',
  C_Login: 'unsigned long C_Login(unsigned long session, unsigned long user, void *pin, unsigned long pinLen)',
  C_GetAttributeValue: 'unsigned long C_GetAttributeValue(unsigned long session, unsigned long object, void *template, unsigned long count)',
  C_FindObjectsInit: 'unsigned long C_FindObjectsInit(unsigned long session, void *template, unsigned long count)',
  C_FindObjects: 'unsigned long C_FindObjects(unsigned long session, void *objects, unsigned long max, void *count)',
  C_FindObjectsFinal: 'unsigned long C_FindObjectsFinal(unsigned long session)',
  C_EncryptInit: 'unsigned long C_EncryptInit(unsigned long session, void *mechanism, unsigned long key)',
  C_Encrypt: 'unsigned long C_Encrypt(unsigned long session, void *data, unsigned long dataLen, void *out, void *outLen)',
  C_DecryptInit: 'unsigned long C_DecryptInit(unsigned long session, void *mechanism, unsigned long key)',
  C_Decrypt: 'unsigned long C_Decrypt(unsigned long session, void *data, unsigned long dataLen, void *out, void *outLen)',
  C_GenerateKey: 'unsigned long C_GenerateKey(unsigned long session, void *mechanism, void *template, unsigned long count, void *key)',
} as const;

type Called = keyof typeof PROTOTYPES;

// koffi registers a prototype's name once per process: declared on first use, shared by every module loaded.
let prototypes: Record<Called, unknown> | null = null;
const prototypeOf = (name: Called) => (prototypes ??= Object.fromEntries(Object.entries(PROTOTYPES).map(([n, text]) => [n, koffi.proto(text)])) as Record<Called, unknown>)[name];

type Native = { (...args: unknown[]): unknown; async: (...args: unknown[]) => void };

/** Native memory that the module may keep pointers into for the length of a call; freed by the caller. */
class Memory {
  readonly #blocks: Array<{ pointer: unknown; view: Buffer }> = [];

  /** A block holding `bytes` (or `size` zero bytes), with its address and a view onto it. */
  block(contents: Buffer | number): { address: bigint; view: Buffer } {
    const size = typeof contents === 'number' ? contents : contents.length;
    const pointer = koffi.alloc('uint8_t', Math.max(1, size));
    const view = Buffer.from(koffi.view(pointer, Math.max(1, size)));
    this.#blocks.push({ pointer, view });
    if (typeof contents === 'number') view.fill(0);
    else contents.copy(view);
    return { address: koffi.address(pointer), view: view.subarray(0, size) };
  }

  ulong(value: number | bigint = 0): { address: bigint; read: () => bigint } {
    const { address, view } = this.block(8);
    view.writeBigUInt64LE(BigInt(value));
    return { address, read: () => view.readBigUInt64LE() };
  }

  /** A CK_ATTRIBUTE array; each value a byte string or a CK_ULONG. */
  template(attributes: Array<[number, Buffer | number | boolean]>): { address: bigint; count: number } {
    const { address, view } = this.block(attributes.length * 24);
    attributes.forEach(([type, value], i) => {
      const bytes = typeof value === 'boolean' ? Buffer.from([value ? 1 : 0]) : typeof value === 'number' ? ulongBytes(value) : value;
      const held = this.block(bytes);
      view.writeBigUInt64LE(BigInt(type), i * 24);
      view.writeBigUInt64LE(held.address, i * 24 + 8);
      view.writeBigUInt64LE(BigInt(bytes.length), i * 24 + 16);
    });
    return { address, count: attributes.length };
  }

  /** A CK_MECHANISM with its parameter block. */
  mechanism(type: number, parameter?: Buffer): bigint {
    const { address, view } = this.block(24);
    view.writeBigUInt64LE(BigInt(type), 0);
    if (parameter) {
      const held = this.block(parameter);
      view.writeBigUInt64LE(held.address, 8);
      view.writeBigUInt64LE(BigInt(parameter.length), 16);
    }
    return address;
  }

  /** CK_GCM_PARAMS (2.40 layout: pIv, ulIvLen, ulIvBits, pAAD, ulAADLen, ulTagBits). */
  gcmParameters(iv: Buffer, aad: Buffer, tagBits: number): Buffer {
    const ivBlock = this.block(iv);
    const aadBlock = this.block(aad);
    const parameters = Buffer.alloc(48);
    parameters.writeBigUInt64LE(ivBlock.address, 0);
    parameters.writeBigUInt64LE(BigInt(iv.length), 8);
    parameters.writeBigUInt64LE(BigInt(iv.length * 8), 16);
    parameters.writeBigUInt64LE(aad.length > 0 ? aadBlock.address : 0n, 24);
    parameters.writeBigUInt64LE(BigInt(aad.length), 32);
    parameters.writeBigUInt64LE(BigInt(tagBits), 40);
    return parameters;
  }

  free(): void {
    // Wiped before they go back: a block may have held a data key or the PIN.
    for (const { pointer, view } of this.#blocks.splice(0)) {
      view.fill(0);
      koffi.free(pointer);
    }
  }
}

// A native call cannot be cancelled; past this its caller gets an error (the HSM counts as lost) and the
// calls queued behind it go on, so that a hung HSM answers 503 rather than holding every request.
const CALL_TIMEOUT_MS = 10_000;

export class Pkcs11Timeout extends Error {
  constructor(fn: string) {
    super(`${fn} did not return within ${CALL_TIMEOUT_MS / 1000} s`);
    this.name = 'Pkcs11Timeout';
  }
}

function withTimeout<T>(call: Promise<T>, fn: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Pkcs11Timeout(fn)), CALL_TIMEOUT_MS);
  });
  return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
}

/** CK_C_INITIALIZE_ARGS: no mutex callbacks, the OS's locking (koffi calls from its worker threads). */
function initializeArgs(memory: Memory): bigint {
  const args = memory.block(48);
  args.view.writeBigUInt64LE(BigInt(CKF_OS_LOCKING_OK), 32);
  return args.address;
}

/**
 * Runs `fn` with native memory freed after it; after a call that timed out the memory is left allocated, since
 * the call may still write into it.
 */
async function withMemory<T>(fn: (memory: Memory) => Promise<T>): Promise<T> {
  const memory = new Memory();
  try {
    const value = await fn(memory);
    memory.free();
    return value;
  } catch (error) {
    if (!(error instanceof Pkcs11Timeout)) memory.free();
    throw error;
  }
}

function ulongBytes(value: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(BigInt(value));
  return bytes;
}

export interface TokenSlot {
  slot: bigint;
  label: string;
  serial: string;
}

export interface AttributeValues {
  [type: number]: Buffer | null;
}

/** One loaded PKCS#11 module. */
export class Pkcs11Module {
  // Cryptoki is initialised once per process: every open of a path shares it, and the last to let go finalises it
  // (finalising under another user would end that user's sessions).
  static readonly #loaded = new Map<string, { module: Pkcs11Module; users: number }>();
  // koffi unloads a library whose object is garbage-collected, and the functions taken from its function list do
  // not hold it: every library loaded stays referenced for the life of the process (a call that timed out may
  // still be running in it after the module is finalised).
  static readonly #libraries = new Set<unknown>();
  readonly #fns: Record<Called, Native>;
  readonly #path: string;

  private constructor(fns: Record<Called, Native>, path: string) {
    this.#fns = fns;
    this.#path = path;
  }

  /** Loads the library and initialises it for use from several threads. Throws when either fails. */
  static open(path: string): Pkcs11Module {
    const loaded = Pkcs11Module.#loaded.get(path);
    if (loaded) {
      loaded.users++;
      return loaded.module;
    }
    const module = Pkcs11Module.#load(path);
    Pkcs11Module.#loaded.set(path, { module, users: 1 });
    return module;
  }

  static #load(path: string): Pkcs11Module {
    const library = koffi.load(path);
    Pkcs11Module.#libraries.add(library);
    const getFunctionList = library.func('unsigned long C_GetFunctionList(void *list)') as unknown as Native;
    const memory = new Memory();
    try {
      const list = memory.ulong();
      const rv = Number(getFunctionList(list.address));
      if (rv !== CKR.OK) throw new Pkcs11Error('C_GetFunctionList', rv);
      // CK_FUNCTION_LIST: a CK_VERSION (two bytes, padded to the pointers' alignment) then the pointers.
      const pointers = Buffer.from(koffi.view(list.read(), 8 + FUNCTIONS.length * 8));
      const fns = {} as Record<Called, Native>;
      for (const name of Object.keys(PROTOTYPES) as Called[]) {
        const address = pointers.readBigUInt64LE(8 + FUNCTIONS.indexOf(name) * 8);
        if (address === 0n) throw new Error(`the PKCS#11 module has no ${name}`);
        fns[name] = koffi.decode(address, prototypeOf(name) as never) as Native;
      }
      const module = new Pkcs11Module(fns, path);
      const initialised = Number(fns.C_Initialize(initializeArgs(memory)));
      if (initialised !== CKR.OK && initialised !== CKR.CRYPTOKI_ALREADY_INITIALIZED) throw new Pkcs11Error('C_Initialize', initialised);
      return module;
    } finally {
      memory.free();
    }
  }

  // Calls go one at a time, whoever makes them: KEK calls are rare, and re-initialising (reset) then never
  // overlaps another call, which PKCS#11 leaves undefined.
  #queue: Promise<unknown> = Promise.resolve();

  #call(name: Called, ...args: unknown[]): Promise<number> {
    const run = this.#queue.then(() => withTimeout(this.#now(name, ...args), name));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #now(name: Called, ...args: unknown[]): Promise<number> {
    const rv = await new Promise<unknown>((resolve, reject) => this.#fns[name].async(...args, (error: unknown, value: unknown) => (error ? reject(error) : resolve(value))));
    return Number(rv);
  }

  /**
   * Finalises and initialises the module again: some modules (SoftHSM2, network HSM clients) see a token that
   * went away and came back only after that. Every session of every user ends; they open new ones.
   */
  reset(): Promise<void> {
    const run = this.#queue.then(async () => {
      await this.#now('C_Finalize', 0n);
      const memory = new Memory();
      try {
        const rv = await this.#now('C_Initialize', initializeArgs(memory));
        if (rv !== CKR.OK && rv !== CKR.CRYPTOKI_ALREADY_INITIALIZED) throw new Pkcs11Error('C_Initialize', rv);
      } finally {
        memory.free();
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #check(name: Called, ...args: unknown[]): Promise<void> {
    const rv = await this.#call(name, ...args);
    if (rv !== CKR.OK) throw new Pkcs11Error(name, rv);
  }

  /** Lets go of the module; the last user finalises it. */
  async finalize(): Promise<void> {
    const loaded = Pkcs11Module.#loaded.get(this.#path);
    if (loaded && --loaded.users > 0) return;
    Pkcs11Module.#loaded.delete(this.#path);
    await this.#call('C_Finalize', 0n);
  }

  /** The slots that hold a token, with each token's label and serial number. */
  async tokens(): Promise<TokenSlot[]> {
    return withMemory(async (memory) => {
      const count = memory.ulong();
      await this.#check('C_GetSlotList', 1, 0n, count.address);
      const n = Number(count.read());
      const slots = memory.block(Math.max(1, n) * 8);
      await this.#check('C_GetSlotList', 1, slots.address, count.address);
      const found: TokenSlot[] = [];
      for (let i = 0; i < Number(count.read()); i++) {
        const slot = slots.view.readBigUInt64LE(i * 8);
        // CK_TOKEN_INFO: label[32], manufacturerID[32], model[16], serialNumber[16], then numbers (208 bytes).
        const info = memory.block(256);
        if ((await this.#call('C_GetTokenInfo', slot, info.address)) !== CKR.OK) continue;
        found.push({ slot, label: info.view.toString('utf8', 0, 32).trimEnd(), serial: info.view.toString('utf8', 80, 96).trimEnd() });
      }
      return found;
    });
  }

  /** The flags of a mechanism on a slot (CKF_ENCRYPT, …), or null when the slot does not offer it. */
  async mechanismFlags(slot: bigint, mechanism: number): Promise<number | null> {
    return withMemory(async (memory) => {
      const info = memory.block(24);
      const rv = await this.#call('C_GetMechanismInfo', slot, mechanism, info.address);
      return rv === CKR.OK ? Number(info.view.readBigUInt64LE(16)) : null;
    });
  }

  async openSession(slot: bigint, readWrite = false): Promise<bigint> {
    return withMemory(async (memory) => {
      const session = memory.ulong();
      await this.#check('C_OpenSession', slot, CKF_SERIAL_SESSION | (readWrite ? CKF_RW_SESSION : 0), 0n, 0n, session.address);
      return session.read();
    });
  }

  async closeSession(session: bigint): Promise<void> {
    await this.#call('C_CloseSession', session);
  }

  /** Logs the user in; a token that says the user already is counts as success. */
  async login(session: bigint, pin: Buffer): Promise<void> {
    return withMemory(async (memory) => {
      const held = memory.block(pin);
      const rv = await this.#call('C_Login', session, CKU_USER, held.address, pin.length);
      held.view.fill(0);
      if (rv !== CKR.OK && rv !== CKR.USER_ALREADY_LOGGED_IN) throw new Pkcs11Error('C_Login', rv);
    });
  }

  /** Handles of the objects matching every attribute given, at most `max`. */
  async findObjects(session: bigint, attributes: Array<[number, Buffer | number | boolean]>, max = 16): Promise<bigint[]> {
    return withMemory(async (memory) => {
      const template = memory.template(attributes);
      await this.#check('C_FindObjectsInit', session, template.address, template.count);
      try {
        const objects = memory.block(max * 8);
        const count = memory.ulong();
        await this.#check('C_FindObjects', session, objects.address, max, count.address);
        return Array.from({ length: Number(count.read()) }, (_, i) => objects.view.readBigUInt64LE(i * 8));
      } finally {
        await this.#call('C_FindObjectsFinal', session);
      }
    });
  }

  /** Attribute values of an object; null for one the token will not tell (sensitive or absent). */
  async attributes(session: bigint, object: bigint, types: number[]): Promise<AttributeValues> {
    const values: AttributeValues = {};
    return withMemory(async (memory) => {
      for (const type of types) {
        // One at a time: a template with one unreadable attribute fails as a whole on some tokens.
        const template = memory.block(24);
        template.view.writeBigUInt64LE(BigInt(type), 0);
        let rv = await this.#call('C_GetAttributeValue', session, object, template.address, 1);
        const length = template.view.readBigUInt64LE(16);
        if (rv !== CKR.OK || length === CK_UNAVAILABLE_INFORMATION) {
          if (isSessionLost(rv)) throw new Pkcs11Error('C_GetAttributeValue', rv);
          values[type] = null;
          continue;
        }
        const value = memory.block(Number(length));
        template.view.writeBigUInt64LE(value.address, 8);
        rv = await this.#call('C_GetAttributeValue', session, object, template.address, 1);
        if (rv !== CKR.OK) throw new Pkcs11Error('C_GetAttributeValue', rv);
        values[type] = Buffer.from(value.view);
      }
      return values;
    });
  }

  /** Creates an AES key on the token; its attributes are the template's. */
  async generateAesKey(session: bigint, attributes: Array<[number, Buffer | number | boolean]>): Promise<bigint> {
    return withMemory(async (memory) => {
      const template = memory.template(attributes);
      const key = memory.ulong();
      await this.#check('C_GenerateKey', session, memory.mechanism(CKM_AES_KEY_GEN), template.address, template.count, key.address);
      return key.read();
    });
  }

  /** AES-GCM under a key on the token: the ciphertext followed by the tag. */
  async gcmEncrypt(session: bigint, key: bigint, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer> {
    return withMemory(async (memory) => {
      await this.#check('C_EncryptInit', session, memory.mechanism(CKM_AES_GCM, memory.gcmParameters(iv, aad, 128)), key);
      const input = memory.block(plaintext);
      const output = memory.block(plaintext.length + 16);
      const length = memory.ulong(plaintext.length + 16);
      const rv = await this.#call('C_Encrypt', session, input.address, plaintext.length, output.address, length.address);
      input.view.fill(0);
      if (rv !== CKR.OK) throw new Pkcs11Error('C_Encrypt', rv);
      return Buffer.from(output.view.subarray(0, Number(length.read())));
    });
  }

  /** The plaintext of an AES-GCM ciphertext-and-tag; CKR_ENCRYPTED_DATA_INVALID when the tag does not verify. */
  async gcmDecrypt(session: bigint, key: bigint, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
    return withMemory(async (memory) => {
      await this.#check('C_DecryptInit', session, memory.mechanism(CKM_AES_GCM, memory.gcmParameters(iv, aad, 128)), key);
      const input = memory.block(sealed);
      const output = memory.block(Math.max(1, sealed.length));
      const length = memory.ulong(Math.max(1, sealed.length));
      const rv = await this.#call('C_Decrypt', session, input.address, sealed.length, output.address, length.address);
      if (rv !== CKR.OK) throw new Pkcs11Error('C_Decrypt', rv);
      const plaintext = Buffer.from(output.view.subarray(0, Number(length.read())));
      output.view.fill(0);
      return plaintext;
    });
  }
}

/** Return values after which the session (or the token, or the device) has to be opened again. */
export function isSessionLost(rv: number): boolean {
  const lost: number[] = [
    CKR.DEVICE_ERROR,
    CKR.DEVICE_MEMORY,
    CKR.DEVICE_REMOVED,
    CKR.SESSION_CLOSED,
    CKR.SESSION_HANDLE_INVALID,
    CKR.TOKEN_NOT_PRESENT,
    CKR.TOKEN_NOT_RECOGNIZED,
    CKR.USER_NOT_LOGGED_IN,
    CKR.KEY_HANDLE_INVALID,
    CKR.OBJECT_HANDLE_INVALID,
    CKR.CRYPTOKI_NOT_INITIALIZED,
  ];
  return lost.includes(rv);
}
