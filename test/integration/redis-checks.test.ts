import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspectRedis, redisVerdict } from '../../common/runtime/redis-checks.js';
import { withRedisPrefix } from '../helpers/redis.js';

test('inspectRedis reads the eviction policy and AOF state of the real Redis', async () => {
  await withRedisPrefix('checks', async (redis) => {
    const report = await inspectRedis(redis);
    const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as [string, string];
    assert.equal(report.maxmemoryPolicy, policy);
    assert.equal(typeof report.aofEnabled, 'boolean');
    assert.equal(report.safe, policy === 'noeviction');
  });
});

test('an evicting Redis is a warning in development and fatal in production', () => {
  const evicting = { maxmemoryPolicy: 'allkeys-lru', aofEnabled: false, safe: false };
  assert.equal(redisVerdict(evicting, false), 'warn');
  assert.equal(redisVerdict(evicting, true), 'fatal');
  const fine = { maxmemoryPolicy: 'noeviction', aofEnabled: true, safe: true };
  assert.equal(redisVerdict(fine, true), 'ok');
});
