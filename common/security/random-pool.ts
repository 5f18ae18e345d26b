import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for values that need to be unpredictable but not kept (verification ids and AES-GCM
 * IVs, made public anyway; the check's one-use blinding salt), handed out from one pool that the
 * OS CSPRNG fills a few KiB at a time. A synchronous `randomBytes(12)` per
 * id or IV costs about 2 µs (a crypto job and a fresh Buffer each time) against about 0.1 µs for a
 * slice of the pool; Node keeps such a cache for `randomUUID` and `randomInt` for the same reason.
 *
 * Every byte is handed out once: a draw that does not fit in what is left refills the whole pool
 * (the unused tail is dropped, never reread). Codes do not come from here: `randomInt` draws them
 * from Node's own cache, which also rejects modulo bias.
 */
const POOL_BYTES = 4096;

const pool = Buffer.alloc(POOL_BYTES);
/** Index of the first byte not yet handed out; "empty" until the first draw. */
let next = POOL_BYTES;

function take(byteCount: number): number {
  if (!Number.isInteger(byteCount) || byteCount < 1 || byteCount > POOL_BYTES) {
    throw new RangeError(`can draw 1–${POOL_BYTES} random bytes at a time`);
  }
  if (next + byteCount > POOL_BYTES) {
    randomFillSync(pool);
    next = 0;
  }
  const start = next;
  next += byteCount;
  return start;
}

/** `byteCount` random bytes as lower-case hex (2 characters per byte). */
export function randomHex(byteCount: number): string {
  const start = take(byteCount);
  return pool.toString('hex', start, start + byteCount);
}

/** `byteCount` random bytes in a Buffer of their own, so a later refill of the pool cannot change them. */
export function randomBuffer(byteCount: number): Buffer {
  const start = take(byteCount);
  return Buffer.from(pool.subarray(start, start + byteCount));
}
