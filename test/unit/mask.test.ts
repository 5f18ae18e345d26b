import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePhoneNumberWithError } from 'libphonenumber-js/max';
import metadata from 'libphonenumber-js/metadata.max.json';
import { maskDestination, maskEmail, maskPhone } from '../../common/observability/mask.js';

/** xorshift32: a seeded generator, so a failing number can be reproduced. */
function seeded(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
}

/** Random E.164-looking numbers: a real calling code, then random digits up to `maxDigits` in all. */
function randomNumbers(count: number, seed: number, maxDigits: number): { e164: string; callingCode: string }[] {
  const callingCodes = ['1', '7', '20', '27', '44', '49', '52', '55', '57', '62', '63', '91', '234', '254', '353', '880', '971'];
  const next = seeded(seed);
  const numbers: { e164: string; callingCode: string }[] = [];
  for (let i = 0; i < count; i += 1) {
    const callingCode = callingCodes[Math.floor(next() * callingCodes.length)] ?? '1';
    const minDigits = 11;
    const total = minDigits + Math.floor(next() * (maxDigits - minDigits + 1));
    let national = String(1 + Math.floor(next() * 9));
    while (callingCode.length + national.length < total) national += String(Math.floor(next() * 10));
    numbers.push({ e164: `+${callingCode}${national}`, callingCode });
  }
  return numbers;
}

/** How maskPhone used to find the calling code: a full libphonenumber parse, '' when it threw. */
function parsedCallingCode(digits: string): string {
  try {
    return parsePhoneNumberWithError(`+${digits}`).countryCallingCode;
  } catch {
    return '';
  }
}

/** Every window of four consecutive digits in `masked` that also occurs in `original`. */
function leakedRuns(masked: string, original: string): string[] {
  const digits = original.replace(/\D/g, '');
  const leaks: string[] = [];
  for (const run of masked.match(/\d+/g) ?? []) {
    for (let i = 0; i + 4 <= run.length; i += 1) {
      const window = run.slice(i, i + 4);
      if (digits.includes(window)) leaks.push(window);
    }
  }
  return leaks;
}

describe('maskPhone', () => {
  test('keeps the calling code and the last two digits of NANP and Indian numbers', () => {
    assert.equal(maskPhone('+14155552671'), '+1••••••••71');
    assert.equal(maskPhone('+919876543210'), '+91••••••••10');
  });

  test('the masked form keeps the length of the number', () => {
    for (const number of ['+14155552671', '+919876543210', '+447911123456']) {
      assert.equal(maskPhone(number).length, number.length);
    }
  });

  test('very short input is masked completely', () => {
    assert.equal(maskPhone('+1234'), '+1••');
    assert.equal(maskPhone(''), '+••');
  });

  test(
    'keeps exactly the calling code of Indonesian and Brazilian numbers',
    () => {
      assert.equal(maskPhone('+6281234567890'), '+62•••••••••90');
      assert.equal(maskPhone('+5511912345678'), '+55•••••••••78');
    },
  );

  test('1,000 random 11–13 digit numbers: no run of more than 3 original digits, last two kept', () => {
    for (const { e164 } of randomNumbers(1000, 0x6b757269, 13)) {
      const masked = maskPhone(e164);
      assert.match(masked, /^\+\d+•+\d\d$/, `${e164} → ${masked}`);
      assert.ok(masked.endsWith(e164.slice(-2)), `${e164} → ${masked}`);
      assert.deepEqual(leakedRuns(masked, e164), [], `${e164} → ${masked}`);
    }
  });

  test('keeps the calling code of a non-geographic number (+800, +882)', () => {
    assert.equal(maskPhone('+80012345678'), '+800••••••78');
    assert.equal(maskPhone('+882345678901'), '+882•••••••01');
  });

  test('input that is no international number shows no leading digits', () => {
    // +0… and +99… start with no calling code; +12 is too short to parse.
    assert.equal(maskPhone('+0123456789'), '+••••••••89');
    assert.equal(maskPhone('+99912345678'), '+•••••••••78');
    assert.equal(maskPhone('+12'), '+••');
  });

  test('no calling code is the start of another (the prefix lookup relies on it)', () => {
    const codes = [...Object.keys(metadata.country_calling_codes), ...Object.keys(metadata.nonGeographic)];
    assert.ok(codes.length > 200, `only ${codes.length} calling codes`);
    for (const code of codes) {
      assert.deepEqual(codes.filter((other) => other !== code && other.startsWith(code)), [], `+${code}`);
    }
  });

  test('shows the calling code libphonenumber parses: every number up to 4 digits, random ones up to 18', () => {
    const cases: string[] = [];
    for (let length = 0; length <= 4; length += 1) {
      for (let value = 0; value < 10 ** length; value += 1) cases.push(String(value).padStart(length, '0'));
    }
    const next = seeded(0x6d61736b);
    for (let length = 5; length <= 18; length += 1) {
      for (let i = 0; i < 300; i += 1) {
        let digits = '';
        while (digits.length < length) digits += String(Math.floor(next() * 10));
        cases.push(digits);
      }
    }
    for (const digits of cases) {
      const callingCode = parsedCallingCode(digits);
      const masked = maskPhone(`+${digits}`);
      assert.ok(masked.startsWith(`+${callingCode}•`), `+${digits} → ${masked}, parse found "${callingCode}"`);
    }
  });

  test(
    '1,000 random numbers up to the E.164 maximum of 15 digits: no run of more than 3 original digits',
    () => {
      for (const { e164, callingCode } of randomNumbers(1000, 0x6b757269, 15)) {
        const masked = maskPhone(e164);
        assert.deepEqual(leakedRuns(masked, e164), [], `${e164} → ${masked}`);
        assert.ok(masked.startsWith(`+${callingCode}•`), `${e164} → ${masked}`);
      }
    },
  );
});

describe('maskEmail', () => {
  test('keeps the first letter and the domain', () => {
    assert.equal(maskEmail('alice@example.com'), 'a•••@example.com');
  });

  test('the local part beyond its first character never appears', () => {
    for (const local of ['alice.smith', 'bob', 'x1', 'otp+tag']) {
      const masked = maskEmail(`${local}@example.com`);
      assert.ok(!masked.includes(local.slice(1)), masked);
    }
  });

  test('the length of the local part is not revealed', () => {
    assert.equal(maskEmail('a@example.com'), maskEmail('abcdefghij@example.com'));
  });

  test('uses the last @ as the separator', () => {
    assert.equal(maskEmail('a"@"b@example.com'), 'a•••@example.com');
  });

  test('an address without a local part or without @ is masked completely', () => {
    assert.equal(maskEmail('@example.com'), '•••');
    assert.equal(maskEmail('not-an-address'), '•••');
    assert.equal(maskEmail(''), '•••');
  });
});

describe('maskDestination', () => {
  test('dispatches on @', () => {
    assert.equal(maskDestination('alice@example.com'), 'a•••@example.com');
    assert.equal(maskDestination('+14155552671'), '+1••••••••71');
  });
});
