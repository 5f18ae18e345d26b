import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { QUEUES } from '../../common/jobs/catalogue.js';
import { JobQueues } from '../../common/jobs/queues.js';
import { createMetrics } from '../../common/observability/metrics.js';
import { readWatchdog, sampleQueues } from '../../common/runtime/watchdog.js';
import { createKeySpace } from '../../common/store/keys.js';
import { withRedisPrefix } from '../helpers/redis.js';

test('the watchdog reports a queue whose ready jobs nobody picks up, and only that queue', async () => {
  await withRedisPrefix('watchdog', async (redis, prefix) => {
    const keys = createKeySpace(prefix);
    const queues = new JobQueues(keys, redis);
    const metrics = createMetrics({ role: 'test', collectDefaults: false });
    try {
      const first = Date.now();
      await queues.enqueueSend('sms', { verificationId: 'ver_aaaaaaaaaaaaaaaaaaaaaaaa', delivery: 1 });
      await new Promise((resolve) => setTimeout(resolve, 400));
      await queues.enqueueSend('sms', { verificationId: 'ver_bbbbbbbbbbbbbbbbbbbbbbbb', delivery: 1 });
      const second = Date.now();
      // A delayed job is not "ready" until its delay is over.
      await queues.armDeliveryTimeout({ verificationId: 'ver_cccccccccccccccccccccccc', delivery: 1 }, 60_000, Date.now() + 600_000);
      // Only the older of the two waiting jobs is past the threshold: the age must come from it.
      const deps = { queues, metrics, redis, keys, logger: pino({ level: 'silent' }), now: () => second + 59_800 };
      const verdict = await sampleQueues(deps, {
        queueNames: [QUEUES.sendSms, QUEUES.sendWhatsapp, QUEUES.deliveryTimeout],
        stallAfterMs: 60_000,
        verdictTtlMs: 30_000,
      });
      assert.deepEqual(verdict.stalled.map((entry) => entry.queue), [QUEUES.sendSms]);
      assert.equal(verdict.stalled[0]?.oldestReadySeconds, 60, 'measured from the oldest waiting job');
      assert.deepEqual(await readWatchdog(redis, keys), verdict);

      const gauge = await metrics.queueJobs.get();
      const waiting = gauge.values.find((value) => value.labels.queue === QUEUES.sendSms && value.labels.state === 'waiting');
      assert.equal(waiting?.value, 2);
      const alarms = await metrics.watchdogAlarms.get();
      assert.equal(alarms.values.find((value) => value.labels.queue === QUEUES.sendSms)?.value, 1);

      const calm = await sampleQueues({ ...deps, now: () => first + 1000 }, { queueNames: [QUEUES.sendSms], stallAfterMs: 60_000, verdictTtlMs: 30_000 });
      assert.deepEqual(calm.stalled, []);
    } finally {
      await queues.close();
    }
  });
});
