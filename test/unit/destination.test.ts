import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDestination, receivesCodes } from '../../common/domain/destination.js';

describe('parseDestination: phone numbers', () => {
  const valid: [string, string, string][] = [
    // input, E.164, country
    ['+62 812-3456-7890', '+6281234567890', 'ID'],
    ['+6281234567890', '+6281234567890', 'ID'],
    ['+55 11 91234-5678', '+5511912345678', 'BR'],
    ['+91 98765 43210', '+919876543210', 'IN'],
    ['+91-98765-43210', '+919876543210', 'IN'],
    ['+57 300 123 4567', '+573001234567', 'CO'],
    ['+1 (201) 555-0123', '+12015550123', 'US'],
    ['+1.415.555.2671', '+14155552671', 'US'],
    ['  +1 415 555 2671  ', '+14155552671', 'US'],
  ];
  for (const [input, e164, country] of valid) {
    test(`${JSON.stringify(input)} → ${e164} (${country})`, () => {
      const destination = parseDestination(input);
      assert.ok(typeof destination === 'object' && destination.kind === 'phone', `${input} parses`);
      assert.deepEqual({ ...destination, numberType: undefined }, { kind: 'phone', value: e164, country, numberType: undefined });
      assert.match(destination.numberType ?? '', /^(MOBILE|FIXED_LINE_OR_MOBILE)$/);
    });
  }

  const notE164: [string, string][] = [
    ['missing +', '6281234567890'],
    ['national format', '0812-3456-7890'],
    ['00 international prefix', '006281234567890'],
    ['letters', '+62812abc7890'],
    ['vanity letters', '+1 800 FLOWERS'],
    ['full-width digits and plus', '＋６２８１２３４５６７８９０'],
    ['full-width digits after ASCII +', '+６２８１２３４５６７８９０'],
    ['Arabic-Indic digits', '+٦٢٨١٢٣٤٥٦٧٨٩٠'],
    ['Eastern Arabic-Indic digits', '+۶۲۸۱۲۳۴۵۶۷۸۹۰'],
    ['zero-width space inside', '+62812\u200B34567890'],
    ['zero-width joiner inside', '+62812\u200D34567890'],
    ['no-break space inside', '+62\u00A0812 3456 7890'],
    ['too short', '+6212'],
    ['empty', ''],
    ['plus only', '+'],
    ['extension', '+1 415 555 2671 ext 5'],
  ];
  for (const [name, input] of notE164) {
    test(`${name} (${JSON.stringify(input)}) → not_e164`, () => {
      assert.equal(parseDestination(input), 'not_e164');
    });
  }

  const invalidNumber: [string, string][] = [
    ['too few digits for the country', '+62 123'],
    ['US 555 exchange area code', '+1 555 555 5555'],
    ['unassigned country code', '+999 1234567'],
    ['all zeros', '+620000000000'],
    ['too long', '+62 812 3456 7890 1234'],
  ];
  for (const [name, input] of invalidNumber) {
    test(`${name} (${JSON.stringify(input)}) → invalid_number`, () => {
      assert.equal(parseDestination(input), 'invalid_number');
    });
  }

  test(
    'fixed-line-only numbers are refused (DESIGN.md: mobile and fixed-line-or-mobile only)',
    () => {
      for (const number of ['+44 20 7946 0958', '+62 21 5000 1234']) {
        const destination = parseDestination(number);
        assert.ok(typeof destination === 'object', `${number} is a valid number`);
        assert.equal(destination.kind === 'phone' ? destination.numberType : 'email', 'FIXED_LINE');
        assert.equal(receivesCodes(destination), false);
      }
      const mobile = parseDestination('+6281234567890');
      assert.ok(typeof mobile === 'object' && receivesCodes(mobile));
      const us = parseDestination('+16502531234');
      assert.ok(typeof us === 'object' && receivesCodes(us), 'FIXED_LINE_OR_MOBILE is accepted');
    },
  );
});

describe('parseDestination: email addresses', () => {
  test('lower-cases and trims an address', () => {
    assert.deepEqual(parseDestination('  Alice.Smith+otp@Example.COM '), {
      kind: 'email',
      value: 'alice.smith+otp@example.com',
      country: undefined,
    });
  });

  const invalid: [string, string][] = [
    ['no local part', '@example.com'],
    ['no domain', 'alice@'],
    ['no TLD', 'alice@example'],
    ['double @', 'alice@@example.com'],
    ['space in local part', 'a b@example.com'],
    ['space in domain', 'alice@exa mple.com'],
    ['trailing dot in domain', 'alice@example.com.'],
    ['consecutive dots', 'alice..smith@example.com'],
    ['longer than 254 characters', `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.com`],
  ];
  for (const [name, input] of invalid) {
    test(`${name} → invalid_email`, () => {
      assert.equal(parseDestination(input), 'invalid_email');
    });
  }
});
