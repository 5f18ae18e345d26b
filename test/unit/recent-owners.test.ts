import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecentOwners } from '../../common/store/recent-owners.js';

describe('RecentOwners', () => {
  it('keeps at most its capacity, dropping the oldest entry first', () => {
    const owners = new RecentOwners(2);
    owners.remember('a', { tenant: 't', destinationMac: 'ma' });
    owners.remember('b', { tenant: 't', destinationMac: 'mb' });
    owners.remember('c', { tenant: 't', destinationMac: 'mc' });
    assert.equal(owners.size, 2);
    assert.equal(owners.get('a'), undefined);
    assert.deepEqual(owners.get('b'), { tenant: 't', destinationMac: 'mb' });
    assert.deepEqual(owners.get('c'), { tenant: 't', destinationMac: 'mc' });
  });

  it('re-remembering an id makes it the newest instead of adding a second entry', () => {
    const owners = new RecentOwners(2);
    owners.remember('a', { tenant: 't', destinationMac: 'ma' });
    owners.remember('b', { tenant: 't', destinationMac: 'mb' });
    owners.remember('a', { tenant: 't', destinationMac: 'ma' });
    owners.remember('c', { tenant: 't', destinationMac: 'mc' });
    assert.equal(owners.size, 2);
    assert.equal(owners.get('b'), undefined);
    assert.ok(owners.get('a'));
  });

  it('with capacity 0 remembers nothing', () => {
    const owners = new RecentOwners(0);
    owners.remember('a', { tenant: 't', destinationMac: 'ma' });
    assert.equal(owners.size, 0);
  });
});
