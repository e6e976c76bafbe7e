import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CsvError, fieldValue, scanRecord } from '../../src/import/csv.js';
import { fileSource } from '../../src/import/files.js';
import { locateField } from '../../src/import/ndjson.js';

const records = (text: string) => {
  const bytes = Buffer.from(text);
  const out: string[][] = [];
  for (let at = 0; at < bytes.length; ) {
    const record = scanRecord(bytes, at, true)!;
    const fields: string[] = [];
    for (let i = 0; i < record.spans.length; i += 2) fields.push(fieldValue(bytes, record.spans[i]!, record.spans[i + 1]!));
    out.push(fields);
    at = record.end;
  }
  return out;
};

describe('CSV records', () => {
  it('read quoted fields, doubled quotes, separators and line breaks inside quotes, CRLF, LF and a lone CR', () => {
    expect(records('a,"b,c","d""e"\r\n"multi\nline",,x\n')).toEqual([
      ['a', 'b,c', 'd"e'],
      ['multi\nline', '', 'x'],
    ]);
    expect(records('a\rb\n"é, ü",名前')).toEqual([['a'], ['b'], ['é, ü', '名前']]);
    expect(records('"",""""\n')).toEqual([['', '"']]);
  });

  it('ask for more bytes rather than guess at the end of a chunk', () => {
    for (const partial of ['a,b', 'a,"b', 'a,"b"', 'a,"b""', 'a\r']) expect(scanRecord(Buffer.from(partial), 0, false)).toBeNull();
    expect(scanRecord(Buffer.from('a,b\n'), 0, false)?.end).toBe(4);
  });

  it('refuse what is not CSV: an unclosed quote, text after a closing quote, a quote inside an unquoted field', () => {
    for (const bad of ['"abc', '"a"b,c', 'a"b,c']) expect(() => scanRecord(Buffer.from(bad), 0, true)).toThrow(CsvError);
  });
});

describe('NDJSON fields', () => {
  it('find the top-level field only, its exact span, whatever the spacing and nesting', () => {
    const line = '{ "a" : {"phone": "inner", "b": [1, "}", {"c": "\\"x"}]}, "phone":"+1 201" , "z": null }';
    const found = locateField(line, 'phone');
    expect('start' in found && line.slice(found.start, found.end)).toBe('"+1 201"');
    expect(locateField('{"a":1}', 'phone')).toEqual({ absent: true });
    expect(locateField('{"phone":12015550123}', 'phone')).toMatchObject({ value: 12015550123 });
    expect(locateField('{"ph\\u006fne":"x"}', 'phone')).toMatchObject({ value: 'x' });
  });

  it('refuse what is ambiguous or not an object', () => {
    expect(locateField('{"phone":"a","phone":"b"}', 'phone')).toEqual({ invalid: 'the field appears twice' });
    expect(locateField('["phone"]', 'phone')).toEqual({ invalid: 'not a JSON object' });
    expect(locateField('{"phone":', 'phone')).toEqual({ invalid: 'not JSON' });
    expect(locateField('null', 'phone')).toEqual({ invalid: 'not a JSON object' });
  });
});

/** The input in chunks of 1 to 7 bytes, so that every record and character is cut somewhere. */
const trickle = (text: string) => {
  const bytes = Buffer.from(text);
  const chunks: Buffer[] = [];
  for (let at = 0, n = 1; at < bytes.length; at += n, n = (n % 7) + 1) chunks.push(bytes.subarray(at, at + n));
  return Readable.from(chunks);
};

async function pass(kind: 'csv' | 'ndjson', name: string, text: string) {
  const written: Buffer[] = [];
  const output = new Writable({ write: (chunk, _e, done) => (written.push(chunk), done()) });
  const source = await fileSource({ kind, name, input: trickle(text), output, digestKey: Buffer.alloc(32) });
  const rows: Array<{ ref: string; value: unknown }> = [];
  for await (const batch of source.batches(null, 2)) {
    rows.push(...batch.rows);
    const staged = source.stage(batch, batch.rows.map((row, i) => (typeof row.value === 'string' ? `tok_${i}` : null)));
    source.advance(staged.end);
    await source.write(staged.output);
  }
  await source.close();
  return { rows, output: Buffer.concat(written).toString() };
}

describe('file sources', () => {
  it('read CSV rows cut at every byte boundary, and write them back with only the value replaced', async () => {
    const text = 'id,note,phone\n1,"a\r\nb",+12015550123\n2,"x,""y""",名前\n3,,\n';
    const { rows, output } = await pass('csv', 'phone', text);
    expect(rows).toEqual([
      { ref: 'row 1', value: '+12015550123' },
      { ref: 'row 2', value: '名前' },
      { ref: 'row 3', value: null },
    ]);
    expect(output).toBe('id,note,phone\n1,"a\r\nb",tok_0\n2,"x,""y""",tok_1\n3,,\n');
  });

  it('read an NDJSON byte order mark as none of the first row, and refuse truncated UTF-8', async () => {
    const { rows, output } = await pass('ndjson', 'phone', '\ufeff{"phone":"+1"}\n{"phone":"+2"}\n');
    expect(rows.map((r) => r.value)).toEqual(['+1', '+2']);
    expect(output).toBe('\ufeff{"phone":"tok_0"}\n{"phone":"tok_1"}\n');
    const truncated = Buffer.concat([Buffer.from('{"phone":"'), Buffer.from([0xf0, 0x9f, 0x98]), Buffer.from('A"}\n')]);
    const written: Buffer[] = [];
    const source = await fileSource({ kind: 'ndjson', name: 'phone', input: Readable.from([truncated]), output: new Writable({ write: (c, _e, done) => (written.push(c), done()) }), digestKey: Buffer.alloc(32) });
    const seen = [];
    for await (const batch of source.batches(null, 10)) seen.push(...batch.rows.map((r) => r.value));
    expect(seen).toEqual([{ invalid: 'not UTF-8' }]);
  });

  it('refuse a row longer than 1 MiB instead of holding and rescanning it (memory stays bounded)', async () => {
    for (const [kind, text] of [['ndjson', `{"phone":"${'1'.repeat(1.1 * 2 ** 20)}`], ['csv', `phone\n"${'1'.repeat(1.1 * 2 ** 20)}`]] as const) {
      const chunks = Array.from({ length: Math.ceil(text.length / 65536) }, (_, i) => Buffer.from(text.slice(i * 65536, (i + 1) * 65536)));
      const source = await fileSource({ kind, name: 'phone', input: Readable.from(chunks), output: new Writable({ write: (_c, _e, done) => done() }), digestKey: Buffer.alloc(32) });
      await expect(async () => {
        for await (const _ of source.batches(null, 10));
      }).rejects.toThrow(/longer than 1048576 bytes/);
    }
  });

  it('read NDJSON rows cut at every byte boundary; an unreadable row becomes an empty line', async () => {
    const text = '{"phone":"é +1"}\n{"phone":"+44"}\r\nnope\n{"other":1}';
    const { rows, output } = await pass('ndjson', 'phone', text);
    expect(rows.map((r) => r.value)).toEqual(['é +1', '+44', { invalid: 'not JSON' }, null]);
    expect(output).toBe('{"phone":"tok_0"}\n{"phone":"tok_1"}\r\n\n{"other":1}');
  });
});
