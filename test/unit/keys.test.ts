/** The key layout (common/store/keys.ts): a verification's id names its destination's slot. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCodeVault } from '../../common/security/code-vault.js';
import { createKeySpace, destinationTag, verificationId } from '../../common/store/keys.js';
import { VERIFICATION_ID } from '../../api/schemas.js';

const vault = createCodeVault('k'.repeat(32));
const keys = createKeySpace('kurir');

describe('key layout', () => {
  it('gives a verification id its destination tag, and its record and lockout the same hash tag', () => {
    const mac = vault.destinationMac('+6281234567890');
    const tag = destinationTag(mac);
    assert.match(tag, /^[0-9a-f]{4}$/);
    assert.equal(tag, Buffer.from(mac, 'base64url').toString('hex', 0, 2));
    const id = verificationId(mac, 'ab'.repeat(12));
    assert.equal(id, `ver_${tag}${'ab'.repeat(12)}`);
    assert.match(id, VERIFICATION_ID);
    assert.equal(keys.verification(id), `kurir:{d${tag}}:${id}`);
    assert.equal(keys.lockBase(mac), `kurir:{d${tag}}:lock:`);
    assert.equal(keys.lockBaseOf(id), keys.lockBase(mac));
  });

  it('spreads destinations over many tags', () => {
    const tags = new Set(Array.from({ length: 2000 }, (_, i) => destinationTag(vault.destinationMac(`+62812${String(i).padStart(8, '0')}`))));
    assert.ok(tags.size > 1900, `${tags.size} tags for 2,000 numbers`);
  });

  it('keeps an id from before tags in a slot of its own, with no lockout base', () => {
    const untagged = `ver_${'c'.repeat(24)}`;
    assert.equal(keys.verification(untagged), `kurir:{${untagged}}`);
    assert.equal(keys.lockBaseOf(untagged), undefined);
  });

  it('refuses ids and MACs it could not place', () => {
    assert.throws(() => verificationId(vault.destinationMac('a@example.com'), 'xyz'), /24 hex digits/);
    assert.throws(() => destinationTag('a'), /too short/);
  });
});
