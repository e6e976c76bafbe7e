import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { CsvError, fieldValue, scanRecord } from './csv.js';
import { locateField } from './ndjson.js';
import { ImportRefused, type ImportBatch, type ImportRow, type ImportSource, type RowTokens } from './run.js';

/**
 * A CSV (`name` is a column of its header row) or NDJSON (`name` is a top-level field) file or stream in; the same
 * rows out, each number replaced by its token and every other byte as it was. A row whose number is refused keeps
 * its place with the value emptied, and an unreadable row becomes an empty line: nothing of a refused row's value
 * reaches the output. The input is read once from its start (standard input can only be read so): a resumed run
 * reads past what it did without tokenizing it again, and writes its last committed batch again from the
 * checkpoint's tokens, over the bytes that batch may have left.
 */

export interface FilePosition {
  /** Input bytes consumed up to here (the header included). */
  offset: number;
  /** Output bytes written up to here. */
  outputOffset: number;
  /** A keyed digest of the input's bytes up to `offset`: a resumed run must read the same input. */
  digest?: string;
}

export interface FilePending {
  /** Where the batch's first row starts in the input, and its output in the output. */
  inputStart: number;
  outputStart: number;
  tokens: RowTokens;
  /** The input's digest up to `inputStart`. */
  startDigest?: string;
}

export interface FileOptions {
  kind: 'csv' | 'ndjson';
  name: string;
  /** A path, or a stream (standard input). */
  input: string | Readable;
  /** A path, or a stream (standard output), which cannot be resumed. */
  output: string | Writable;
  /**
   * Keys the digest of the input read so far (the tenant's fingerprint key): a plain hash of a short input
   * could be searched for the numbers in it.
   */
  digestKey: Buffer;
}

/** One input row: its bytes (line break included) and where the value lies in them. */
interface Row {
  start: number;
  bytes: Buffer;
  /** The value's byte span within `bytes`; null when there is none (skipped). */
  span: [number, number] | null;
  /** The value's text, or why the row cannot be read (it is then written as an empty line). */
  value: ImportRow['value'];
}

type FileBatch = ImportBatch<FilePosition> & { data: Row[] };

const CHUNK = 1 << 20;
// A row longer than this is refused rather than rescanned with every chunk that does not end it.
const MAX_ROW_BYTES = 1 << 20;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const EMPTY_LINE = Buffer.from('\n');

export async function fileSource(options: FileOptions): Promise<ImportSource<FilePosition, FilePending>> {
  const inputSize = typeof options.input === 'string' ? (await stat(options.input)).size : null;
  let out: FileHandle | null = null;
  let outputAt = 0;
  let header: Buffer | null = null;
  let headerEnd = 0;
  let columnIndex = -1;
  let replay: { pending: FilePending; position: FilePosition; parts: Buffer[]; seen: number } | null = null;
  let stream: Readable | null = null;
  // The input read so far, keyed. rows() adds a row's bytes when the next is asked for, so while the caller holds
  // a row, `input` covers everything before it.
  const input = createHash('sha256').update(options.digestKey).update('phonevault import input');
  const digestBefore = () => input.copy().digest('base64url');
  const digestThrough = (row: Row) => input.copy().update(row.bytes).digest('base64url');
  const differs = () => new ImportRefused('the input differs from the one the interrupted run read: run it again with that input, or start over with --restart and a new output');

  async function openOutput(resuming: boolean): Promise<void> {
    if (typeof options.output !== 'string' || out) return;
    if (!resuming) {
      const existing = await stat(options.output).catch(() => null);
      // Never over another file: the output of a run whose first batch never committed is empty.
      if (existing && existing.size > 0) throw new ImportRefused(`the output file exists and no interrupted run of this import wrote it; remove it or choose another`);
    }
    out = await open(options.output, resuming ? 'r+' : 'w');
  }

  async function writeAt(offset: number, bytes: Buffer): Promise<void> {
    if (out) {
      await out.write(bytes, 0, bytes.length, offset);
      // On disk before the next batch's checkpoint counts it as written.
      await out.datasync();
      return;
    }
    const target = options.output as Writable;
    if (!target.write(bytes)) await new Promise((resolve) => target.once('drain', resolve));
  }

  function csvRow(bytes: Buffer, start: number, spans: number[]): Row {
    if (columnIndex * 2 + 1 >= spans.length) return { start, bytes, span: null, value: { invalid: 'the row has no such column' } };
    const span: [number, number] = [spans[columnIndex * 2]!, spans[columnIndex * 2 + 1]!];
    const value = fieldValue(bytes, span[0], span[1]);
    return { start, bytes, span, value: value === '' ? null : value };
  }

  function ndjsonRow(bytes: Buffer, start: number): Row {
    let text: string;
    try {
      text = UTF8.decode(bytes);
    } catch {
      return { start, bytes, span: null, value: { invalid: 'not UTF-8' } };
    }
    // A byte order mark before the first line is no part of its JSON; it stays in the output as it was.
    const bom = start === 0 && text.startsWith('\ufeff') ? 1 : 0;
    const line = text.slice(bom).replace(/\r?\n$/, '');
    if (line.trim() === '') return { start, bytes, span: null, value: null };
    const found = locateField(line, options.name);
    if ('invalid' in found) return { start, bytes, span: null, value: { invalid: found.invalid } };
    if ('absent' in found) return { start, bytes, span: null, value: null };
    const prefix = bom ? 3 : 0;
    const span: [number, number] = [prefix + Buffer.byteLength(line.slice(0, found.start)), prefix + Buffer.byteLength(line.slice(0, found.end))];
    if (found.value === null || found.value === '') return { start, bytes, span: null, value: null };
    if (typeof found.value !== 'string') return { start, bytes, span: null, value: { invalid: 'not a string' } };
    return { start, bytes, span, value: found.value };
  }

  /** A row's output: its token in place of the value; a refused value emptied; an unreadable row an empty line. */
  function render(row: Row, token: string | null): Buffer {
    if (row.value !== null && typeof row.value === 'object') return EMPTY_LINE;
    if (!row.span) return row.bytes;
    const replacement = options.kind === 'csv' ? (token ?? '') : JSON.stringify(token);
    const ending = row.bytes.subarray(row.span[1]);
    return Buffer.concat([row.bytes.subarray(0, row.span[0]), Buffer.from(replacement), ending]);
  }

  /** Every row of the input in order, after the header (CSV), which is read first. */
  async function* rows(): AsyncGenerator<Row> {
    stream = typeof options.input === 'string' ? createReadStream(options.input, { highWaterMark: CHUNK }) : options.input;
    let buffer = Buffer.alloc(0);
    let base = 0; // the input offset of buffer[0]
    let at = 0;
    let ended = false;
    const chunks = stream[Symbol.asyncIterator]();
    for (;;) {
      if (at >= buffer.length && ended) return;
      let row: Row | null = null;
      if (at < buffer.length) {
        if (options.kind === 'csv') {
          let record;
          try {
            record = scanRecord(buffer, at, ended);
          } catch (error) {
            if (error instanceof CsvError) throw new ImportRefused(`the CSV is malformed at byte ${base + at}: ${error.message}`);
            throw error;
          }
          if (record) {
            const bytes = buffer.subarray(at, record.end);
            const spans = record.spans.map((s) => s - at);
            if (!header) {
              readHeader(bytes, spans, base + record.end);
              input.update(bytes);
            } else row = csvRow(bytes, base + at, spans);
            at = record.end;
            if (!row) continue;
          }
        } else {
          const newline = buffer.indexOf(0x0a, at);
          if (newline >= 0 || ended) {
            const end = newline >= 0 ? newline + 1 : buffer.length;
            row = ndjsonRow(buffer.subarray(at, end), base + at);
            at = end;
          }
        }
      }
      if (row) {
        yield row;
        input.update(row.bytes);
        continue;
      }
      if (buffer.length - at > MAX_ROW_BYTES) throw new ImportRefused(`a row at byte ${base + at} is longer than ${MAX_ROW_BYTES} bytes`);
      const next = await chunks.next();
      if (next.done) ended = true;
      else {
        buffer = Buffer.concat([buffer.subarray(at), next.value as Buffer]);
        base += at;
        at = 0;
      }
    }
  }

  function readHeader(bytes: Buffer, spans: number[], end: number): void {
    header = bytes;
    headerEnd = end;
    const names: string[] = [];
    for (let i = 0; i < spans.length; i += 2) names.push(fieldValue(bytes, spans[i]!, spans[i + 1]!));
    if (names[0]?.startsWith('\ufeff')) names[0] = names[0].slice(1);
    columnIndex = names.indexOf(options.name);
    if (columnIndex < 0) throw new ImportRefused(`the CSV header has no column ${JSON.stringify(options.name)}`);
    if (names.indexOf(options.name, columnIndex + 1) >= 0) throw new ImportRefused(`the CSV header names the column ${JSON.stringify(options.name)} twice`);
  }

  /** The output of a batch starting at `outputStart`: the header first if it opens the output. */
  const withHeader = (outputStart: number, parts: Buffer[]) => Buffer.concat(outputStart === 0 && header ? [header, ...parts] : parts);

  async function finishReplay(digest: string): Promise<void> {
    const r = replay!;
    replay = null;
    if (r.position.digest !== undefined && r.position.digest !== digest) throw differs();
    const bytes = withHeader(r.pending.outputStart, r.parts);
    if (r.seen !== r.pending.tokens.length || r.pending.outputStart + bytes.length !== r.position.outputOffset) {
      throw new ImportRefused('the input differs from the one the interrupted run read: run it with the same input');
    }
    await out!.truncate(r.pending.outputStart);
    await writeAt(r.pending.outputStart, bytes);
    outputAt = r.position.outputOffset;
  }

  return {
    resumable: typeof options.output === 'string',

    async recover(pending, position) {
      await openOutput(true);
      if ((await out!.stat()).size < pending.outputStart) throw new ImportRefused('the output is shorter than the checkpoint says was written: it was changed, or is not this import\'s');
      replay = { pending, position, parts: [], seen: 0 };
    },

    async *batches(from, size) {
      if (!from) await openOutput(false);
      const resumeAt = from?.offset ?? 0;
      let number = 0;
      let batch: FileBatch | null = null;
      let yielded = false;
      for await (const row of rows()) {
        number++;
        if (replay && row.start >= replay.pending.inputStart && row.start < replay.position.offset) {
          // Before anything is written again: is this the input the stopped run read, up to its last batch?
          if (replay.seen === 0 && replay.pending.startDigest !== undefined && replay.pending.startDigest !== digestBefore()) throw differs();
          replay.parts.push(render(row, replay.pending.tokens[replay.seen++] ?? null));
          if (row.start + row.bytes.length >= replay.position.offset) await finishReplay(digestThrough(row));
          continue;
        }
        if (row.start < resumeAt) continue;
        if (replay) await finishReplay(digestBefore());
        batch ??= { rows: [], data: [], start: { offset: row.start, outputOffset: 0, digest: digestBefore() }, end: { offset: row.start, outputOffset: 0 } };
        batch.rows.push({ ref: `row ${number}`, value: row.value });
        batch.data.push(row);
        batch.end = { offset: row.start + row.bytes.length, outputOffset: 0 };
        if (batch.rows.length >= size) {
          batch.end.digest = digestThrough(row);
          yield batch;
          yielded = true;
          batch = null;
        }
      }
      if (replay) await finishReplay(digestBefore());
      if (batch) {
        batch.end.digest = digestBefore();
        yield batch;
      }
      // A CSV of its header alone: the output is the header.
      else if (!yielded && !from && header) yield { rows: [], data: [], start: { offset: headerEnd, outputOffset: 0, digest: digestBefore() }, end: { offset: headerEnd, outputOffset: 0, digest: digestBefore() } } satisfies FileBatch;
    },

    stage(batch, tokens) {
      const { data } = batch as FileBatch;
      const outputStart = outputAt;
      const bytes = withHeader(outputStart, data.map((row, i) => render(row, tokens[i]!)));
      return {
        end: { offset: batch.end.offset, outputOffset: outputStart + bytes.length, ...(batch.end.digest ? { digest: batch.end.digest } : {}) },
        pending: { inputStart: batch.start.offset, outputStart, tokens, ...(batch.start.digest ? { startDigest: batch.start.digest } : {}) },
        output: { offset: outputStart, bytes },
      };
    },

    advance(end) {
      outputAt = end.outputOffset;
    },

    async write(output) {
      const { offset, bytes } = output as { offset: number; bytes: Buffer };
      await writeAt(offset, bytes);
    },

    progress(position) {
      return inputSize === null ? null : { done: position?.offset ?? 0, total: inputSize };
    },

    async close() {
      if (typeof options.input === 'string') (stream as { destroy?: () => void } | null)?.destroy?.();
      await (out as FileHandle | null)?.close();
    },
  };
}
