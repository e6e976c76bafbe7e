import type { LineType } from '../phone/parse.js';
import type { ItemError, Minting, Opened, PhoneInput } from './bulk.js';

/**
 * What passes between the vault and its worker threads (src/vault/offload.ts). Buffers arrive on the other side
 * as plain Uint8Arrays, and a Buffer cut from Node's shared pool would drag the whole pool along, so many small
 * buffers travel packed into one, with the end offset of each.
 */
export interface Packed {
  data: Uint8Array;
  ends: Uint32Array;
}

export function pack(buffers: Uint8Array[]): Packed {
  const ends = new Uint32Array(buffers.length);
  let total = 0;
  buffers.forEach((buffer, i) => {
    total += buffer.length;
    ends[i] = total;
  });
  const data = new Uint8Array(total);
  buffers.forEach((buffer, i) => data.set(buffer, ends[i]! - buffer.length));
  return { data, ends };
}

/** A Buffer over the same memory as a received Uint8Array; nothing is copied. */
export const asBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** Views into `packed`, one per packed buffer; nothing is copied. */
export function unpack(packed: Uint8Array, ends: Uint32Array): Buffer[] {
  const data = asBuffer(packed);
  const buffers: Buffer[] = new Array(ends.length);
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    buffers[i] = data.subarray(start, ends[i]);
    start = ends[i]!;
  }
  return buffers;
}

export interface PrepareTask {
  tenant: string;
  inputs: PhoneInput[];
  version: number;
  key: Uint8Array;
  fingerprintKey: Uint8Array;
  minting: Minting;
}

export interface PrepareResult {
  slots: Array<number | ItemError>;
  e164: string[];
  country: Array<string | null>;
  lineType: LineType[];
  tokenIds: Uint8Array;
  tokenIdEnds: Uint32Array;
  envelopes: Uint8Array;
  envelopeEnds: Uint32Array;
  fingerprints: Uint8Array;
  fingerprintEnds: Uint32Array;
}

export interface OpenTask {
  tenant: string;
  keys: Array<[number, Uint8Array]>;
  keyVersions: Uint32Array;
  tokenIds: Uint8Array;
  tokenIdEnds: Uint32Array;
  envelopes: Uint8Array;
  envelopeEnds: Uint32Array;
  fingerprints: Uint8Array;
  fingerprintEnds: Uint32Array;
}

/**
 * The numbers a worker opened, as one string: a thousand strings cloned one by one back to the event loop cost
 * the worker a visible share of its time (docs/performance-history.md). Lines in order: the E.164 number, `!` for
 * an envelope that failed authentication, empty for a key that is gone. None of the three can be mistaken for
 * another, nor contain a line break.
 */
export function packOpened(opened: Opened[]): string {
  return opened.map((number) => (number === undefined ? '' : number === null ? '!' : number)).join('\n');
}

export function unpackOpened(packed: string, count: number): Opened[] {
  if (count === 0) return [];
  const lines = packed.split('\n');
  if (lines.length !== count) throw new Error(`${count} opened numbers expected, got ${lines.length}`);
  return lines.map((line) => (line === '' ? undefined : line === '!' ? null : line));
}
