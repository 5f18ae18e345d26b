/**
 * The per-minute stats of `/v1/stats` against the real Redis: the key layout and its retention,
 * window arithmetic across minutes and hours, the recording points (with their cost metrics),
 * the once-per-delivery claim, the batched writes of a process (one script per tenant and hour
 * per interval) and that a broken Redis never makes a recorder throw. Fresh key
 * prefix per test; time is a fake clock.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { DEFAULT_POLICY } from '../../common/config/policy.js';
import { createMetrics } from '../../common/observability/metrics.js';
import { STATS_RETENTION_SECONDS, StatsStore, statsKey } from '../../common/stats/stats.store.js';
import { recordCreated, recordDelivered, recordEnded, recordFallback, recordSent } from '../../common/stats/stats-recorder.js';
import { createKeySpace } from '../../common/store/keys.js';
import { VerificationStore } from '../../common/store/verification.store.js';
import { capturingLogger } from '../helpers/logger.js';
import { TEST_REDIS_URL, keysOf, withRedisPrefix } from '../helpers/redis.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;
/** A whole hour, so minute offsets below are easy to read; recent, or the keys would expire at once. */
const T0 = Math.floor(Date.now() / HOUR) * HOUR;
const ALL = { country: undefined, channel: undefined };

describe('StatsStore', () => {
  it('one event is one key, per tenant and hour, expiring 8 days after its hour', async () => {
    await withRedisPrefix('stats-key', async (redis, prefix) => {
      const stats = new StatsStore(redis, prefix);
      await stats.add('acme', T0 + 5 * MINUTE + 1234, [{ country: 'ID', channel: 'sms', counters: { sent: 1, cost: 41_500 } }]);
      const keys = await keysOf(redis, prefix);
      assert.deepEqual(keys, [statsKey(prefix, 'acme', T0 / HOUR)]);
      assert.deepEqual(await redis.hgetall(keys[0] ?? ''), { '5:sent:ID:sms': '1', '5:cost:ID:sms': '41500' });
      const expiresAt = await redis.expiretime(keys[0] ?? '');
      assert.equal(expiresAt, (T0 + HOUR) / 1000 + STATS_RETENTION_SECONDS);
    });
  });

  it('reads whole minutes in [from, to), across hours, per tenant, with filters', async () => {
    await withRedisPrefix('stats-window', async (redis, prefix) => {
      const stats = new StatsStore(redis, prefix);
      const created = (tenant: string, at: number, country = 'ID', channel: 'whatsapp' | 'sms' | 'email' = 'whatsapp') =>
        stats.add(tenant, at, [{ country, channel, counters: { created: 1 } }]);
      await created('acme', T0 + 59 * MINUTE + 59_999);
      await created('acme', T0 + HOUR);
      await created('acme', T0 + HOUR + 30_000, 'BR', 'sms');
      await created('acme', T0 + 2 * HOUR);
      await created('beta', T0 + HOUR);

      const count = async (from: number, to: number, filters: { country: string | undefined; channel: 'sms' | undefined } = ALL) =>
        (await stats.totals('acme', from, to, filters)).counters.created;
      assert.equal(await count(T0, T0 + 3 * HOUR), 4);
      assert.equal(await count(T0 + 59 * MINUTE, T0 + HOUR), 1, 'the last minute of the first hour');
      assert.equal(await count(T0 + HOUR, T0 + HOUR + MINUTE), 2, 'the first minute of the second hour');
      assert.equal(await count(T0 + HOUR, T0 + 2 * HOUR), 2, '`to` is exclusive');
      assert.equal(await count(T0 + HOUR, T0 + 2 * HOUR + MINUTE), 3);
      assert.equal(await count(T0, T0 + 3 * HOUR, { country: 'BR', channel: undefined }), 1);
      assert.equal(await count(T0, T0 + 3 * HOUR, { country: 'ID', channel: 'sms' }), 0);
      assert.equal(await count(T0 + HOUR, T0 + HOUR), 0);
      assert.equal((await stats.totals('beta', T0, T0 + 3 * HOUR, ALL)).counters.created, 1);
      assert.equal((await stats.totals('gamma', T0, T0 + 3 * HOUR, ALL)).counters.created, 0);
    });
  });

  it('latency samples merge into bucket counts', async () => {
    await withRedisPrefix('stats-hist', async (redis, prefix) => {
      const stats = new StatsStore(redis, prefix);
      for (const [offset, seconds] of [[0, 0.2], [MINUTE, 0.4], [2 * MINUTE, 1.5], [3 * MINUTE, 500]] as const) {
        await stats.add('acme', T0 + offset, [{ country: 'ID', channel: 'whatsapp', counters: { delivered: 1 }, samples: { ttd: seconds } }]);
      }
      const totals = await stats.totals('acme', T0, T0 + HOUR, ALL);
      assert.equal(totals.counters.delivered, 4);
      assert.deepEqual(totals.histograms.ttd, [2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    });
  });
});

/** The scripts a connection runs from now on (the stats writes; not the tests' own reads). */
function scriptsRun(redis: Redis): string[] {
  const names: string[] = [];
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((command: Parameters<Redis['sendCommand']>[0], stream?: Parameters<Redis['sendCommand']>[1]) => {
    if (command.name === 'evalsha' || command.name === 'eval') names.push(command.name);
    return send(command, stream);
  }) as Redis['sendCommand'];
  return names;
}

describe('StatsStore, batched', () => {
  it("an interval's events become one script per tenant and hour, with the sums; nothing before the flush", async () => {
    await withRedisPrefix('stats-batch', async (redis, prefix) => {
      const stats = new StatsStore(redis, prefix, { flushIntervalMs: 60_000 });
      const scripts = scriptsRun(redis);
      const created = { country: 'ID', channel: 'whatsapp' as const, counters: { created: 1 } };
      for (let i = 0; i < 50; i += 1) await stats.add('acme', T0 + 3 * MINUTE + i, [created]);
      await stats.add('acme', T0 + 4 * MINUTE, [{ country: 'ID', channel: 'sms', counters: { sent: 1, cost: 41_500 }, samples: { ttd: 0.2 } }]);
      await stats.add('acme', T0 + 4 * MINUTE, [{ country: 'ID', channel: 'sms', counters: { sent: 1, cost: 41_500 }, samples: { ttd: 0.3 } }]);
      await stats.add('acme', T0 + HOUR, [created]);
      await stats.add('beta', T0, [created]);
      assert.deepEqual(scripts, [], 'nothing is written before the flush');
      assert.deepEqual(await keysOf(redis, prefix), []);

      await stats.flush();
      assert.equal(scripts.length, 3, 'one script per tenant and hour');
      assert.deepEqual(await redis.hgetall(statsKey(prefix, 'acme', T0 / HOUR)), {
        '3:created:ID:whatsapp': '50',
        '4:sent:ID:sms': '2',
        '4:cost:ID:sms': '83000',
        '4:ttd0:ID:sms': '2',
      });
      const acme = await stats.totals('acme', T0, T0 + 2 * HOUR, ALL);
      assert.equal(acme.counters.created, 51);
      assert.equal((await stats.totals('beta', T0, T0 + HOUR, ALL)).counters.created, 1);
      assert.equal(await redis.expiretime(statsKey(prefix, 'acme', T0 / HOUR + 1)), (T0 + 2 * HOUR) / 1000 + STATS_RETENTION_SECONDS);

      await stats.flush();
      assert.equal(scripts.length, 3, 'an empty flush writes nothing');
    });
  });

  it('writes by itself after the interval, and close() writes what is still pending', async () => {
    await withRedisPrefix('stats-batch-timer', async (redis, prefix) => {
      const stats = new StatsStore(redis, prefix, { flushIntervalMs: 50 });
      await stats.add('acme', T0, [{ country: 'ID', channel: 'sms', counters: { created: 1 } }]);
      const deadline = Date.now() + 5000;
      while ((await stats.totals('acme', T0, T0 + HOUR, ALL)).counters.created === 0) {
        assert.ok(Date.now() < deadline, 'the timer never flushed');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const closing = new StatsStore(redis, prefix, { flushIntervalMs: 60_000 });
      await closing.add('acme', T0, [{ country: 'ID', channel: 'sms', counters: { created: 2 } }]);
      await closing.close();
      assert.equal((await stats.totals('acme', T0, T0 + HOUR, ALL)).counters.created, 3);
    });
  });

  it('a failed batch is logged once per flush and dropped, never thrown', async () => {
    const broken = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    const lines: Record<string, unknown>[] = [];
    const stats = new StatsStore(broken, 'kt-stats-batch-broken', { flushIntervalMs: 60_000, logger: capturingLogger(lines) });
    try {
      await stats.add('acme', T0, [{ country: 'ID', channel: 'sms', counters: { created: 1 } }]);
      await stats.add('beta', T0, [{ country: 'ID', channel: 'sms', counters: { created: 1 } }]);
      await stats.close();
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.equal(lines[0]?.msg, 'stats could not be recorded');
      assert.equal(lines[0]?.writes, 2);
      await stats.flush();
      assert.equal(lines.length, 1, 'dropped: not retried by the next flush');
    } finally {
      broken.disconnect();
    }
  });
});

describe('recording points', () => {
  it('create, send (SMS per segment, email), delivery (WhatsApp), fallback and ends feed the stats and the cost metrics', async () => {
    await withRedisPrefix('stats-rec', async (redis, prefix) => {
      const keys = createKeySpace(prefix);
      const metrics = createMetrics({ role: 'test', collectDefaults: false });
      const clock = { now: T0 + 10 * MINUTE };
      const deps = { redis, keys, stats: new StatsStore(redis, prefix), logger: capturingLogger(), now: () => clock.now, metrics, policy: DEFAULT_POLICY };
      const base = { to: '+6281234560000', externalId: 'ver_x-1' };
      await recordCreated(deps, { tenant: 'acme', country: 'ID', channel: 'whatsapp' });
      await recordSent(deps, { tenant: 'acme', country: 'ID', message: { ...base, channel: 'whatsapp', templateName: 't', templateLanguage: 'id', code: '1' } });
      await recordDelivered(deps, { tenant: 'acme', country: 'ID', channel: 'whatsapp', latencySeconds: 0.3 });
      await recordSent(deps, { tenant: 'acme', country: 'ID', message: { ...base, channel: 'sms', text: 'x'.repeat(200) } });
      await recordSent(deps, { tenant: 'acme', country: 'ZZ', message: { ...base, to: 'a@example.com', channel: 'email', subject: 's', text: 't', html: 'h' } });
      await recordEnded(deps, { tenant: 'acme', country: 'ID', channel: 'whatsapp', status: 'approved', timeToVerifySeconds: 12 });
      await recordEnded(deps, { tenant: 'acme', country: 'ID', channel: 'sms', status: 'canceled', timeToVerifySeconds: undefined });

      const store = new VerificationStore(redis, keys, 60_000);
      const id = `ver_${randomBytes(8).toString('hex')}`;
      await store.create({
        id, tenant: 'acme', to: '+6281234560000', destinationMac: 'bWFjLW9mLWEtbnVtYmVy', kind: 'phone', country: 'ID', purpose: 'login', locale: 'id',
        plan: ['whatsapp', 'sms'], firstChannel: 'whatsapp', firstReason: 'initial', maxAttempts: 5, codeLength: 6, deliveryTimeoutSeconds: 30,
        codeMac: 'c', codeSealed: 's', createdAt: clock.now, expiresAt: clock.now + 300_000, fingerprint: 'f',
      });
      await recordFallback({ ...deps, store }, { verificationId: id, from: 'whatsapp' });

      const totals = await new StatsStore(redis, prefix).totals('acme', T0, T0 + HOUR, ALL);
      assert.deepEqual(
        { ...totals.counters },
        { created: 1, sent: 3, delivered: 1, fallback: 1, approved: 1, expired: 0, max_attempts: 0, cost: 30_000 + 2 * 41_500 + 100 },
      );
      assert.equal(totals.histograms.ttv[2], 1, '12 s is in the third bucket, (10, 15]');

      const cost = await metrics.cost.get();
      const byChannel = Object.fromEntries(cost.values.map((value) => [`${value.labels.channel}/${value.labels.country}/${value.labels.currency}`, value.value]));
      assert.deepEqual(byChannel, { 'whatsapp/ID/USD': 0.03, 'sms/ID/USD': 0.083, 'email/ZZ/USD': 0.0001 });
      const billable = await metrics.messagesBillable.get();
      assert.deepEqual(billable.values.map((value) => [value.labels.channel, value.value]).sort(), [['email', 1], ['sms', 1], ['whatsapp', 1]]);
    });
  });

  it('a Redis that is away makes the recorders log, never throw', async () => {
    const broken = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    const lines: Record<string, unknown>[] = [];
    const deps = {
      redis: broken,
      keys: createKeySpace('kt-stats-broken'),
      stats: new StatsStore(broken, 'kt-stats-broken'),
      logger: capturingLogger(lines),
      now: () => T0,
      metrics: createMetrics({ role: 'test', collectDefaults: false }),
      policy: DEFAULT_POLICY,
    };
    try {
      await recordCreated(deps, { tenant: 'acme', country: 'ID', channel: 'sms' });
      await recordDelivered(deps, { tenant: 'acme', country: 'ID', channel: 'whatsapp', latencySeconds: 1 });
      await recordEnded(deps, { tenant: 'acme', country: 'ID', channel: 'sms', status: 'approved', timeToVerifySeconds: 3 });
      await recordFallback({ ...deps, store: new VerificationStore(broken, deps.keys, 1000) }, { verificationId: 'ver_x000000001', from: 'whatsapp' });
      assert.equal(lines.filter((line) => line.level === 40).length, 4, JSON.stringify(lines));
    } finally {
      broken.disconnect();
    }
  });
});
