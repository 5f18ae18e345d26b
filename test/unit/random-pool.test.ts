import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBuffer, randomHex } from '../../common/security/random-pool.js';

/** More than the pool holds, so the draws below cross at least one refill. */
const PAST_A_REFILL = 3 * 4096;

describe('random pool', () => {
  test('randomHex gives 2 lower-case hex characters per byte', () => {
    for (const bytes of [1, 12, 16, 100]) assert.match(randomHex(bytes), new RegExp(`^[0-9a-f]{${bytes * 2}}$`));
  });

  test('12-byte draws never repeat across refills (each byte is handed out once)', () => {
    const seen = new Set<string>();
    for (let drawn = 0; drawn < PAST_A_REFILL; drawn += 12) seen.add(randomHex(12));
    assert.equal(seen.size, Math.ceil(PAST_A_REFILL / 12));
  });

  test('a buffer is its own copy: later draws and refills do not change it', () => {
    const buffer = randomBuffer(12);
    const before = Buffer.from(buffer);
    for (let drawn = 0; drawn < PAST_A_REFILL; drawn += 64) randomBuffer(64);
    assert.deepEqual(buffer, before);
    assert.equal(buffer.length, 12);
  });

  test('every byte value turns up and none dominates', () => {
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 256; i += 1) for (const byte of randomBuffer(256)) counts[byte] = (counts[byte] ?? 0) + 1;
    // 65,536 bytes, 256 expected per value: a stuck or zeroed pool lands far outside this band.
    assert.ok(counts.every((count) => count > 150 && count < 380), `counts range ${Math.min(...counts)}–${Math.max(...counts)}`);
  });

  test('refuses draws that are empty, fractional or larger than the pool', () => {
    for (const bytes of [0, -1, 1.5, 4097, Number.NaN]) assert.throws(() => randomHex(bytes), RangeError, `${bytes}`);
  });
});
