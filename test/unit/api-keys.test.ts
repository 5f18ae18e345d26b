import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createApiKeyAuthenticator } from '../../common/security/api-keys.js';

const ACME_KEY = 'kurir_acme_0123456789abcdef';
const GLOBEX_KEY = 'kurir_globex_fedcba9876543210';

describe('createApiKeyAuthenticator', () => {
  const auth = createApiKeyAuthenticator(new Map([['acme', ACME_KEY], ['globex', GLOBEX_KEY]]));

  test('the right key resolves to its tenant', () => {
    assert.equal(auth.tenantFor(ACME_KEY), 'acme');
    assert.equal(auth.tenantFor(GLOBEX_KEY), 'globex');
  });

  test('a wrong key is undefined', () => {
    assert.equal(auth.tenantFor('kurir_nobody_0123456789abcdef'), undefined);
  });

  test('an empty key is undefined', () => {
    assert.equal(auth.tenantFor(''), undefined);
  });

  test('a prefix, an extension or a case change of a key is undefined', () => {
    assert.equal(auth.tenantFor(ACME_KEY.slice(0, -1)), undefined);
    assert.equal(auth.tenantFor(ACME_KEY.slice(0, 8)), undefined);
    assert.equal(auth.tenantFor(`${ACME_KEY}x`), undefined);
    assert.equal(auth.tenantFor(` ${ACME_KEY}`), undefined);
    assert.equal(auth.tenantFor(ACME_KEY.toUpperCase()), undefined);
  });

  test('a tenant name is not a key', () => {
    assert.equal(auth.tenantFor('acme'), undefined);
  });

  test('with no keys configured nothing resolves', () => {
    const none = createApiKeyAuthenticator(new Map());
    assert.equal(none.tenantFor(ACME_KEY), undefined);
    assert.equal(none.tenantFor(''), undefined);
  });

  test('a key keeps resolving after its first use, and what nearly matches it stays refused', () => {
    const fresh = createApiKeyAuthenticator(new Map([['acme', ACME_KEY], ['globex', GLOBEX_KEY]]));
    for (let i = 0; i < 3; i += 1) {
      assert.equal(fresh.tenantFor(ACME_KEY), 'acme');
      assert.equal(fresh.tenantFor(ACME_KEY.slice(0, -1)), undefined);
      assert.equal(fresh.tenantFor(`${ACME_KEY}x`), undefined);
      assert.equal(fresh.tenantFor(GLOBEX_KEY), 'globex');
    }
  });

  test('unknown tokens are refused however often they are sent', () => {
    const fresh = createApiKeyAuthenticator(new Map([['acme', ACME_KEY]]));
    for (let i = 0; i < 1000; i += 1) assert.equal(fresh.tenantFor(`kurir_guess_${i}`), undefined);
    assert.equal(fresh.tenantFor('kurir_guess_7'), undefined);
    assert.equal(fresh.tenantFor(ACME_KEY), 'acme');
  });

  test('later changes to the configured map do not change who is authenticated', () => {
    const keys = new Map([['acme', ACME_KEY]]);
    const snapshot = createApiKeyAuthenticator(keys);
    keys.set('intruder', 'kurir_intruder_0123456789');
    keys.delete('acme');
    assert.equal(snapshot.tenantFor('kurir_intruder_0123456789'), undefined);
    assert.equal(snapshot.tenantFor(ACME_KEY), 'acme');
  });
});
