import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { DEFAULT_POLICY, loadPolicy, parsePolicy } from '../../common/config/policy.js';

test('the documented example policy parses and equals the built-in defaults where it shows them', () => {
  const policy = loadPolicy(fileURLToPath(new URL('../../policy/kurir.policy.example.yaml', import.meta.url)));
  assert.deepEqual(policy.purposes, DEFAULT_POLICY.purposes);
  assert.deepEqual(policy.code, DEFAULT_POLICY.code);
  assert.deepEqual(policy.resend, DEFAULT_POLICY.resend);
  assert.deepEqual(policy.routing.whatsappFirstCountries, DEFAULT_POLICY.routing.whatsappFirstCountries);
  assert.deepEqual(policy.templates, DEFAULT_POLICY.templates);
  assert.deepEqual(policy.security, DEFAULT_POLICY.security);
  assert.deepEqual(policy.throughput, DEFAULT_POLICY.throughput);
  assert.deepEqual(policy.prices, DEFAULT_POLICY.prices);
  // The example shows a subset of the locale table; the rest still comes from the defaults.
  assert.equal(policy.locales.byCountry.AR, 'es');
});

test('the price table: every WhatsApp-first country has a WhatsApp price, overrides merge over the defaults', () => {
  for (const country of DEFAULT_POLICY.routing.whatsappFirstCountries) {
    assert.ok(Object.hasOwn(DEFAULT_POLICY.prices.whatsapp.byCountry, country), `no WhatsApp price for ${country}`);
  }
  const policy = parsePolicy({ prices: { currency: 'EUR', sms: { byCountry: { ID: 0.04 } } } });
  assert.equal(policy.prices.currency, 'EUR');
  assert.equal(policy.prices.sms.byCountry.ID, 0.04);
  assert.equal(policy.prices.sms.byCountry.IN, DEFAULT_POLICY.prices.sms.byCountry.IN);
  assert.throws(() => parsePolicy({ prices: { sms: { default: -1 } } }), /prices\.sms\.default/);
  assert.throws(() => parsePolicy({ prices: { currency: 'usd' } }), /prices\.currency/);
  assert.throws(() => parsePolicy({ prices: { whatsapp: { byCountry: { Indonesia: 0.03 } } } }), /prices\.whatsapp\.byCountry/);
});
