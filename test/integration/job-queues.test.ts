/**
 * The verification's timer (JobQueues: scheduleExpiry, armDeliveryTimeout, disarmDeliveryTimeout)
 * against the real Redis, under a fresh key prefix removed afterwards.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QUEUES, jobIds } from '../../common/jobs/catalogue.js';
import { JobQueues } from '../../common/jobs/queues.js';
import { createKeySpace } from '../../common/store/keys.js';
import { withRedisPrefix } from '../helpers/redis.js';

const ID = 'ver_0123456789abcdef01234567';
const MINUTE = 60_000;

/** Runs `body` with JobQueues on a fresh prefix, counting the timer queue's job reads. */
function withQueues(label: string, body: (queues: JobQueues, dueAt: () => Promise<number>, jobReads: () => number) => Promise<void>) {
  return withRedisPrefix(label, async (redis, prefix) => {
    const queues = new JobQueues(createKeySpace(prefix), redis);
    const timers = queues.queue(QUEUES.verificationExpiry);
    const getJob = timers.getJob.bind(timers);
    let reads = 0;
    timers.getJob = (id) => {
      reads += 1;
      return getJob(id);
    };
    const dueAt = async () => {
      const job = await getJob(jobIds.verificationExpiry(ID));
      assert.ok(job !== undefined, 'the timer exists');
      return job.timestamp + (job.delay ?? 0);
    };
    try {
      await body(queues, dueAt, () => reads);
    } finally {
      await queues.close();
    }
  });
}

describe('the verification timer', () => {
  it('moves to a delivery deadline and back to the expiry by its id alone, never reading the job', () =>
    withQueues('kt-jobq-timer', async (queues, dueAt, jobReads) => {
      const expiresAt = Date.now() + 10 * MINUTE;
      await queues.scheduleExpiry(ID, expiresAt);
      assert.ok(Math.abs((await dueAt()) - expiresAt) < 1000);

      await queues.armDeliveryTimeout({ verificationId: ID, delivery: 1 }, 20_000, expiresAt);
      assert.ok(Math.abs((await dueAt()) - (Date.now() + 20_000)) < 1000, 'at the delivery deadline');
      await queues.disarmDeliveryTimeout(ID, 1, expiresAt);
      assert.ok(Math.abs((await dueAt()) - expiresAt) < 1000, 'back at the expiry');
      assert.equal(jobReads(), 0, 'moved without reading the job first');
      assert.equal(await queues.queue(QUEUES.deliveryTimeout).getJob(jobIds.deliveryTimeout(ID, 1)), undefined, 'no timeout job of its own');
    }));

  it('arms no deadline at or after the expiry: the verification ends first', () =>
    withQueues('kt-jobq-late', async (queues, dueAt) => {
      const expiresAt = Date.now() + 15_000;
      await queues.scheduleExpiry(ID, expiresAt);
      await queues.armDeliveryTimeout({ verificationId: ID, delivery: 1 }, 20_000, expiresAt);
      assert.ok(Math.abs((await dueAt()) - expiresAt) < 1000, 'still at the expiry');
      assert.equal(await queues.queue(QUEUES.deliveryTimeout).getJob(jobIds.deliveryTimeout(ID, 1)), undefined);
    }));

  it('without a timer to move, arms a delivery timeout job of its own, and removes it once delivered', () =>
    withQueues('kt-jobq-own', async (queues, _dueAt, jobReads) => {
      const expiresAt = Date.now() + 10 * MINUTE;
      await queues.armDeliveryTimeout({ verificationId: ID, delivery: 1 }, 20_000, expiresAt);
      const own = queues.queue(QUEUES.deliveryTimeout);
      assert.notEqual(await own.getJob(jobIds.deliveryTimeout(ID, 1)), undefined, 'armed as a job of its own');
      await queues.disarmDeliveryTimeout(ID, 1, expiresAt);
      assert.equal(await own.getJob(jobIds.deliveryTimeout(ID, 1)), undefined);
      assert.ok(jobReads() >= 1, 'the missing timer was looked up');
    }));
});
