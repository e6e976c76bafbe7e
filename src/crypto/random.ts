import { randomFillSync } from 'node:crypto';

/**
 * CSPRNG bytes drawn from a pool refilled in large blocks: one syscall serves many IVs and token ids.
 * Every byte is handed out once and the pool is never reused, so the output is exactly as random as
 * crypto.randomBytes — only cheaper per call.
 */
const POOL_BYTES = 16 * 1024;
let pool = Buffer.alloc(0);
let offset = 0;

export function randomBytesBuffered(size: number): Buffer {
  if (size > POOL_BYTES / 4) return randomFillSync(Buffer.alloc(size));
  if (offset + size > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES));
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + size));
  pool.fill(0, offset, offset + size);
  offset += size;
  return out;
}
