import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import {
  DEFAULT_TOLERANCE_SECONDS,
  signPayload,
  signatureHeader,
  verifySignature,
} from '../../common/providers/ycloud/ycloud-signature.js';

// Test vector from providers.md §6.4 (YCloud Developer Kit webhook-signature-vectors.tsv).
const SECRET = 'whsec_test_6c2f0f6c3a6d4b16';
const BODY = '{"id":"evt_01","type":"whatsapp.inbound_message.received","apiVersion":"v2"}';
const T = 1700000000;
const SIG = '4ee5dc4c43b9d27aa16b9e46a59ea8700d0b3b90d9da6139a302aa7a55cbdaa1';
const RAW = Buffer.from(BODY, 'utf8');

function verify(header: string | undefined, options: { rawBody?: Buffer; nowSeconds?: number; secret?: string } = {}) {
  return verifySignature({
    header,
    rawBody: options.rawBody ?? RAW,
    secret: options.secret ?? SECRET,
    nowSeconds: options.nowSeconds ?? T,
  });
}

describe('signing', () => {
  test('signPayload reproduces the documented vector', () => {
    assert.equal(signPayload(SECRET, T, BODY), SIG);
    assert.equal(signPayload(SECRET, T, RAW), SIG);
  });

  test('signatureHeader builds t=…,s=…', () => {
    assert.equal(signatureHeader(SECRET, T, BODY), `t=${T},s=${SIG}`);
  });

  test('signs raw bytes, not a UTF-8 re-decoding of them', () => {
    const raw = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]); // not valid UTF-8
    const expected = createHmac('sha256', SECRET).update(Buffer.concat([Buffer.from(`${T}.`), raw])).digest('hex');
    assert.equal(signPayload(SECRET, T, raw), expected);
    assert.deepEqual(verify(`t=${T},s=${expected}`, { rawBody: raw }), { ok: true, timestamp: T });
  });
});

describe('verifySignature', () => {
  test('accepts the documented vector', () => {
    assert.deepEqual(verify(`t=${T},s=${SIG}`), { ok: true, timestamp: T });
  });

  test('accepts spaces around pairs, reversed order and unknown extra pairs', () => {
    assert.deepEqual(verify(` t=${T} , s=${SIG} `), { ok: true, timestamp: T });
    assert.deepEqual(verify(`s=${SIG},t=${T}`), { ok: true, timestamp: T });
    assert.deepEqual(verify(`t=${T},v=1,s=${SIG}`), { ok: true, timestamp: T });
  });

  test('accepts upper-case hex', () => {
    assert.deepEqual(verify(`t=${T},s=${SIG.toUpperCase()}`), { ok: true, timestamp: T });
  });

  test('a missing or empty header is "missing"', () => {
    assert.deepEqual(verify(undefined), { ok: false, reason: 'missing' });
    assert.deepEqual(verify(''), { ok: false, reason: 'missing' });
  });

  const malformed: [string, string][] = [
    ['no t', `s=${SIG}`],
    ['no s', `t=${T}`],
    ['non-hex signature', `t=${T},s=${'z'.repeat(64)}`],
    ['63-char signature', `t=${T},s=${SIG.slice(0, 63)}`],
    ['65-char signature', `t=${T},s=${SIG}0`],
    ['t=abc', `t=abc,s=${SIG}`],
    ['negative t', `t=-${T},s=${SIG}`],
    ['fractional t', `t=${T}.5,s=${SIG}`],
    ['empty t', `t=,s=${SIG}`],
    ['double comma', `t=${T},,s=${SIG}`],
    ['trailing comma', `t=${T},s=${SIG},`],
    ['leading comma', `,t=${T},s=${SIG}`],
    ['s= only', 's='],
    ['t= and s= empty', 't=,s='],
    ['bare signature', SIG],
    ['no equals sign', `t${T},s${SIG}`],
    ['key missing before =', `=${T},s=${SIG}`],
    ['whitespace only', '   '],
    ['v1-style header', `t=${T},v1=${SIG}`],
  ];
  for (const [name, header] of malformed) {
    test(`malformed header (${name}) is "malformed" and does not throw`, () => {
      assert.deepEqual(verify(header), { ok: false, reason: 'malformed' });
    });
  }

  test('arbitrary junk headers never throw and never pass', () => {
    const alphabet = 'ts=,0123456789abcdefABCDEF \t.-x';
    let state = 0x2545f491;
    const next = () => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 0x1_0000_0000;
    };
    for (let i = 0; i < 2000; i += 1) {
      let header = '';
      const length = 1 + Math.floor(next() * 90);
      for (let j = 0; j < length; j += 1) header += alphabet[Math.floor(next() * alphabet.length)];
      const result = verify(header);
      assert.equal(result.ok, false, header);
    }
  });

  test('a timestamp more than 300 s old is "stale"', () => {
    assert.equal(DEFAULT_TOLERANCE_SECONDS, 300);
    assert.deepEqual(verify(`t=${T},s=${SIG}`, { nowSeconds: T + 301 }), { ok: false, reason: 'stale' });
    assert.deepEqual(verify(`t=${T},s=${SIG}`, { nowSeconds: T + 86_400 }), { ok: false, reason: 'stale' });
  });

  test('a timestamp more than 300 s in the future is "stale"', () => {
    assert.deepEqual(verify(`t=${T},s=${SIG}`, { nowSeconds: T - 301 }), { ok: false, reason: 'stale' });
  });

  test('exactly 300 s either way is still accepted', () => {
    assert.deepEqual(verify(`t=${T},s=${SIG}`, { nowSeconds: T + 300 }), { ok: true, timestamp: T });
    assert.deepEqual(verify(`t=${T},s=${SIG}`, { nowSeconds: T - 300 }), { ok: true, timestamp: T });
  });

  test('a custom tolerance is honoured', () => {
    const base = { header: `t=${T},s=${SIG}`, rawBody: RAW, secret: SECRET };
    assert.deepEqual(verifySignature({ ...base, nowSeconds: T + 11, toleranceSeconds: 10 }), { ok: false, reason: 'stale' });
    assert.deepEqual(verifySignature({ ...base, nowSeconds: T + 10, toleranceSeconds: 10 }), { ok: true, timestamp: T });
  });

  test('flipping any single body byte is "mismatch"', () => {
    for (let index = 0; index < RAW.length; index += 1) {
      const tampered = Buffer.from(RAW);
      tampered[index] = (tampered[index] ?? 0) ^ 0x01;
      assert.deepEqual(verify(`t=${T},s=${SIG}`, { rawBody: tampered }), { ok: false, reason: 'mismatch' }, `byte ${index}`);
    }
  });

  test('a re-serialised (pretty-printed) body is "mismatch"', () => {
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(BODY), null, 1));
    assert.deepEqual(verify(`t=${T},s=${SIG}`, { rawBody: reserialised }), { ok: false, reason: 'mismatch' });
  });

  test('the help-center trailing-dot variant `${t}.${body}.` is "mismatch"', () => {
    const trailingDot = createHmac('sha256', SECRET).update(`${T}.${BODY}.`).digest('hex');
    assert.notEqual(trailingDot, SIG);
    assert.deepEqual(verify(`t=${T},s=${trailingDot}`), { ok: false, reason: 'mismatch' });
  });

  test('another secret is "mismatch"', () => {
    assert.deepEqual(verify(`t=${T},s=${SIG}`, { secret: 'whsec_other' }), { ok: false, reason: 'mismatch' });
  });

  test('a timestamp changed after signing is "mismatch" (the timestamp is signed)', () => {
    assert.deepEqual(verify(`t=${T + 1},s=${SIG}`), { ok: false, reason: 'mismatch' });
  });
});
