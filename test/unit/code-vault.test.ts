import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCodeVault, generateCode } from '../../common/security/code-vault.js';

const SECRET = 'unit-test-secret-0123456789abcdef0123456789';
const OTHER_SECRET = 'unit-test-secret-fedcba9876543210fedcba9876';
const VER_ID = 'ver_0123456789abcdef01234567';
const OTHER_VER_ID = 'ver_76543210fedcba9876543210';

/** Pearson's chi-square statistic of observed counts against a uniform expectation. */
function chiSquareUniform(counts: readonly number[]): number {
  const total = counts.reduce((sum, count) => sum + count, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
}

const SAMPLES = 100_000;
const POSITIONS = 6;
/**
 * χ²(df = 9) critical values. The test must never flake in CI, so false alarms are held near
 * one in a million runs: each of the six positions at p = 1e-7 / 6 (χ² ≤ 52, p ≈ 4.5e-8), and the
 * pooled 6 × 10⁵ digits at p ≈ 6e-7 (χ² ≤ 46). The pooled test is the sharp one: a modulo bias
 * (`byte % 10`) gives χ² ≈ 220 over the pooled digits (≈ 37 per position).
 */
const CHI2_DF9_PER_POSITION = 52;
const CHI2_DF9_POOLED = 46;

describe('generateCode', () => {
  test('produces exactly `length` ASCII digits for every length 4–10', () => {
    for (let length = 4; length <= 10; length += 1) {
      for (let i = 0; i < 200; i += 1) {
        const code = generateCode(length);
        assert.match(code, /^[0-9]+$/, `length ${length}: ${code}`);
        assert.equal(code.length, length);
      }
    }
  });

  test('refuses lengths outside 4–10 and non-integers with a RangeError', () => {
    for (const length of [3, 11, 0, -1, 4.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => generateCode(length), RangeError, `length ${length}`);
    }
  });

  test('every position of 10⁵ six-digit codes is uniform over the ten digits (χ², df = 9)', () => {
    const counts = Array.from({ length: POSITIONS }, () => new Array<number>(10).fill(0));
    for (let i = 0; i < SAMPLES; i += 1) {
      const code = generateCode(POSITIONS);
      for (let position = 0; position < POSITIONS; position += 1) {
        const digit = code.charCodeAt(position) - 48;
        const row = counts[position];
        assert.ok(row !== undefined && digit >= 0 && digit <= 9, `non-digit in ${code}`);
        row[digit] = (row[digit] ?? 0) + 1;
      }
    }
    counts.forEach((row, position) => {
      const statistic = chiSquareUniform(row);
      assert.ok(statistic <= CHI2_DF9_PER_POSITION, `position ${position}: χ² = ${statistic.toFixed(2)}, counts ${row.join(',')}`);
    });
    const pooled = Array.from({ length: 10 }, (_, digit) => counts.reduce((sum, row) => sum + (row[digit] ?? 0), 0));
    const statistic = chiSquareUniform(pooled);
    assert.ok(statistic <= CHI2_DF9_POOLED, `pooled: χ² = ${statistic.toFixed(2)}, counts ${pooled.join(',')}`);
  });

  test('the χ² threshold is sharp enough to catch a classic modulo bias (randomByte % 10)', () => {
    // Expected pooled counts for 6 × 10⁵ draws of `byte % 10`: digits 0–5 have 26/256, 6–9 have 25/256.
    const biased = Array.from({ length: 10 }, (_, digit) => (SAMPLES * POSITIONS * (digit < 6 ? 26 : 25)) / 256);
    const statistic = chiSquareUniform(biased);
    assert.ok(statistic > CHI2_DF9_POOLED * 3, `χ² of the biased distribution is only ${statistic.toFixed(2)}`);
    assert.equal(chiSquareUniform(new Array<number>(10).fill(SAMPLES / 10)), 0);
  });
});

describe('createCodeVault', () => {
  const vault = createCodeVault(SECRET);

  test('generate is the bounded digit generator', () => {
    assert.match(vault.generate(8), /^[0-9]{8}$/);
    assert.throws(() => vault.generate(11), RangeError);
  });

  test('mac is stable for the same secret, verification and code', () => {
    assert.equal(vault.mac(VER_ID, '123456'), vault.mac(VER_ID, '123456'));
    assert.equal(vault.mac(VER_ID, '123456'), createCodeVault(SECRET).mac(VER_ID, '123456'));
  });

  test('destinationMac names the keys deployed lockouts and limits already use, and differs per destination', () => {
    assert.equal(vault.destinationMac('+6281234567890'), vault.mac('destination', '+6281234567890'));
    assert.notEqual(vault.destinationMac('+6281234567890'), vault.destinationMac('+6281234567891'));
  });

  test('mac differs by code, by verification id and by secret', () => {
    const base = vault.mac(VER_ID, '123456');
    assert.notEqual(vault.mac(VER_ID, '123457'), base);
    assert.notEqual(vault.mac(OTHER_VER_ID, '123456'), base);
    assert.notEqual(createCodeVault(OTHER_SECRET).mac(VER_ID, '123456'), base);
  });

  test('mac never contains the code', () => {
    for (let i = 0; i < 200; i += 1) {
      const code = generateCode(6);
      assert.ok(!vault.mac(VER_ID, code).includes(code));
    }
  });

  test('seal/open round-trips codes of every length', () => {
    for (let length = 4; length <= 10; length += 1) {
      const code = generateCode(length);
      assert.equal(vault.open(VER_ID, vault.seal(VER_ID, code)), code);
    }
  });

  test('a second vault with the same secret opens what the first sealed (another process)', () => {
    assert.equal(createCodeVault(SECRET).open(VER_ID, vault.seal(VER_ID, '048213')), '048213');
  });

  test('sealing twice gives different ciphertexts (fresh IV)', () => {
    assert.notEqual(vault.seal(VER_ID, '123456'), vault.seal(VER_ID, '123456'));
  });

  test('sealed text never contains the code, neither as text nor as raw bytes', () => {
    for (let i = 0; i < 200; i += 1) {
      const code = generateCode(6);
      const sealed = vault.seal(VER_ID, code);
      assert.ok(!sealed.includes(code), `${sealed} contains ${code}`);
      assert.equal(Buffer.from(sealed, 'base64url').indexOf(Buffer.from(code, 'utf8')), -1);
    }
  });

  test('flipping any single byte of the sealed code makes open throw', () => {
    const sealed = vault.seal(VER_ID, '123456');
    const raw = Buffer.from(sealed, 'base64url');
    for (let index = 0; index < raw.length; index += 1) {
      const tampered = Buffer.from(raw);
      tampered[index] = (tampered[index] ?? 0) ^ 0x01;
      assert.throws(() => vault.open(VER_ID, tampered.toString('base64url')), Error, `byte ${index}`);
    }
  });

  test('a truncated sealed code throws', () => {
    const raw = Buffer.from(vault.seal(VER_ID, '123456'), 'base64url');
    assert.throws(() => vault.open(VER_ID, raw.subarray(0, 28).toString('base64url')), /truncated/);
    assert.throws(() => vault.open(VER_ID, ''), /truncated/);
    assert.throws(() => vault.open(VER_ID, raw.subarray(0, raw.length - 1).toString('base64url')));
  });

  test('opening with another verification id (AAD) throws', () => {
    const sealed = vault.seal(VER_ID, '123456');
    assert.throws(() => vault.open(OTHER_VER_ID, sealed));
  });

  test('opening with another secret throws', () => {
    const sealed = vault.seal(VER_ID, '123456');
    assert.throws(() => createCodeVault(OTHER_SECRET).open(VER_ID, sealed));
  });
});

describe('production sources', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const PRODUCTION_DIRS = ['api', 'worker', 'scheduler', 'common', 'simulator'];

  function productionSources(): string[] {
    const files: string[] = [];
    for (const dir of PRODUCTION_DIRS) {
      for (const entry of readdirSync(join(root, dir), { recursive: true })) {
        const relative = join(dir, String(entry));
        if (relative.endsWith('.ts')) files.push(relative);
      }
    }
    return files;
  }

  test('no production .ts file under api/ worker/ scheduler/ common/ simulator/ uses Math.random', () => {
    const files = productionSources();
    // Guards against the scan silently finding nothing (wrong root, renamed folders).
    assert.ok(files.includes(join('common', 'security', 'code-vault.ts')), 'code-vault.ts was not scanned');
    assert.ok(files.length >= 20, `only ${files.length} files scanned`);
    const offenders = files.filter((file) => /\bMath\s*\.\s*random\b/.test(readFileSync(join(root, file), 'utf8')));
    assert.deepEqual(offenders, []);
  });
});
