import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import { openRows, prepareRows, type EnvelopeRow, type Minting, type Opened, type PhoneInput, type Prepared, type SealingKeys } from './bulk.js';
import { pack, unpack, unpackOpened, type OpenTask, type PrepareResult, type PrepareTask } from './offload-protocol.js';
import { safeErrorFields } from '../logger.js';

/**
 * Large batches parse and seal (tokenize) or open (detokenize) on worker threads, so that one 1000-item request
 * neither stalls the event loop for every other caller nor leaves the machine's other cores idle. Small requests
 * stay inline: a thread hop costs more than it saves below a few dozen items. The results are the same either
 * way (src/vault/bulk.ts). Keys travel to the worker with each task and are not kept there.
 */
export interface Offload {
  /** Parses and seals the inputs under keys reserved for one encryption per input, inline or on a thread alike. */
  prepareRows(tenant: string, inputs: PhoneInput[], keys: SealingKeys, minting: Minting): Promise<Prepared>;
  openRows(tenant: string, keys: ReadonlyMap<number, Buffer>, rows: EnvelopeRow[]): Promise<Opened[]>;
  close(): Promise<void>;
}

const prepareInline = async (tenant: string, inputs: PhoneInput[], keys: SealingKeys, minting: Minting): Promise<Prepared> =>
  prepareRows(tenant, inputs, keys, minting);

/** Below these sizes a round trip to a thread costs more than the parsing, sealing or opening it would move. */
const PREPARE_OFFLOAD_ITEMS = 16;
const OPEN_OFFLOAD_ITEMS = 64;

// A key is copied into an array of its own before it is sent: a Buffer cut from Node's shared pool would carry
// the rest of the pool (other values) to the worker with it.
const ownCopy = (key: Buffer): Uint8Array => new Uint8Array(key);

/**
 * The compiled worker beside this module; when the vault runs from its TypeScript sources (the test runner),
 * the build's copy, which `npm test` makes first.
 */
function workerFile(): URL | null {
  for (const candidate of [new URL('./offload-worker.js', import.meta.url), new URL('../../dist/vault/offload-worker.js', import.meta.url)]) {
    if (existsSync(fileURLToPath(candidate))) return candidate;
  }
  return null;
}

export const inlineOffload: Offload = {
  prepareRows: prepareInline,
  openRows: async (...args) => openRows(...args),
  close: async () => undefined,
};

export function createOffload(options: { threads: number; logger?: Logger; workerFile?: URL }): Offload {
  if (options.threads === 0) return inlineOffload;
  const file = options.workerFile ?? workerFile();
  // Asked for threads and none can start: a broken install, said at start-up rather than served slowly inline.
  if (!file || !existsSync(fileURLToPath(file))) throw new Error('OFFLOAD_THREADS is set but the worker (dist/vault/offload-worker.js) is missing; run `npm run build`');
  const pool = new Piscina({
    filename: file.href,
    minThreads: options.threads,
    maxThreads: options.threads,
    idleTimeout: Number.POSITIVE_INFINITY,
    // First come, first served: by default piscina sends a task it could not hand to a busy thread to the back of
    // the queue, so under steady load one request could wait behind dozens that came after it.
    stricterFIFO: true,
    // The handler a thread loads at start: one the module has, so that piscina finds it by require() and never
    // falls back to import() of the same module. Node 20's require(esm) meeting an import() in flight is a fatal
    // V8 error (nodejs/node#55782), seen once in the suite.
    name: 'prepare',
    // A 1000-item task allocates a few MB of short-lived objects (libphonenumber's, the ciphers'): a young
    // generation of 8 MB kept the thread collecting; 16 MB was the knee (docs/performance-history.md).
    resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16 },
  });
  // A worker that dies outside a task is replaced by the pool; unheard, the event would end the process.
  pool.on('error', (error: unknown) => options.logger?.error({ err: safeErrorFields(error) }, 'offload worker failed'));

  return {
    async prepareRows(tenant, inputs, keys, minting) {
      if (inputs.length < PREPARE_OFFLOAD_ITEMS) return prepareInline(tenant, inputs, keys, minting);
      const task: PrepareTask = { tenant, inputs, version: keys.version, key: ownCopy(keys.key), fingerprintKey: ownCopy(keys.fingerprintKey), minting };
      const result = (await pool.run(task, { name: 'prepare' })) as PrepareResult;
      const tokenIds = unpack(result.tokenIds, result.tokenIdEnds);
      const envelopes = unpack(result.envelopes, result.envelopeEnds);
      const fingerprints = unpack(result.fingerprints, result.fingerprintEnds);
      return {
        slots: result.slots,
        rows: result.e164.map((e164, i) => ({
          tokenId: tokenIds[i]!,
          keyVersion: keys.version,
          envelope: envelopes[i]!,
          fingerprint: fingerprints[i]!,
          e164,
          country: result.country[i]!,
          lineType: result.lineType[i]!,
        })),
      };
    },

    async openRows(tenant, keys, rows) {
      if (rows.length < OPEN_OFFLOAD_ITEMS) return openRows(tenant, keys, rows);
      const tokenIds = pack(rows.map((row) => row.tokenId));
      const envelopes = pack(rows.map((row) => row.envelope));
      const fingerprints = pack(rows.map((row) => row.fingerprint));
      const task: OpenTask = {
        tenant,
        keys: [...keys].map(([version, key]) => [version, ownCopy(key)]),
        keyVersions: Uint32Array.from(rows, (row) => row.keyVersion),
        tokenIds: tokenIds.data,
        tokenIdEnds: tokenIds.ends,
        envelopes: envelopes.data,
        envelopeEnds: envelopes.ends,
        fingerprints: fingerprints.data,
        fingerprintEnds: fingerprints.ends,
      };
      return unpackOpened((await pool.run(task, { name: 'open' })) as string, rows.length);
    },

    close: () => pool.destroy(),
  };
}
