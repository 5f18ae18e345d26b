import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { DEFAULT_POLICY, loadPolicy } from '../../common/config/policy.js';

test('the documented example policy parses and equals the built-in defaults where it shows them', () => {
  const policy = loadPolicy(fileURLToPath(new URL('../../policy/kurir.policy.example.yaml', import.meta.url)));
  assert.deepEqual(policy.purposes, DEFAULT_POLICY.purposes);
  assert.deepEqual(policy.code, DEFAULT_POLICY.code);
  assert.deepEqual(policy.resend, DEFAULT_POLICY.resend);
  assert.deepEqual(policy.routing.whatsappFirstCountries, DEFAULT_POLICY.routing.whatsappFirstCountries);
  assert.deepEqual(policy.templates, DEFAULT_POLICY.templates);
  assert.deepEqual(policy.security, DEFAULT_POLICY.security);
  assert.deepEqual(policy.throughput, DEFAULT_POLICY.throughput);
  // The example shows a subset of the locale table; the rest still comes from the defaults.
  assert.equal(policy.locales.byCountry.AR, 'es');
});
