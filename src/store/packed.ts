/**
 * Fixed-width values travel packed end to end in one bytea parameter, sent in binary, and the statement cuts
 * them apart by position (`substring(… FROM (i - 1) * width + 1 FOR width)`): cheaper on both sides than a
 * `bytea[]` that the driver hex-encodes and the server parses back element by element.
 */
export function packFixed(buffers: Buffer[], width: number): Buffer {
  const packed = Buffer.allocUnsafe(buffers.length * width);
  buffers.forEach((buffer, index) => {
    if (buffer.length !== width) throw new Error(`values of ${width} bytes expected, got ${buffer.length}`);
    buffer.copy(packed, index * width);
  });
  return packed;
}

/** The SQL that cuts the `i`th (1-based) value of `width` bytes out of the packed parameter `param` (`:name`). */
export const packedAt = (param: string, i: string, width: number | string): string =>
  `substring(${param}::bytea FROM (${i}::int - 1) * ${width} + 1 FOR ${width})`;
