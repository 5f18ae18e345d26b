/**
 * The API queues the first send just before it stores the verification, so a worker can run the
 * job before the record exists. Such a job goes back to the delayed set for a moment — it must not
 * spend one of its send attempts on that, or a provider failure later gets one retry fewer.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { jobIds, SEND_QUEUE } from '../../common/jobs/catalogue.js';
import { startKurir, type KurirHarness } from '../helpers/kurir.js';

describe('a send job that runs before its record is stored', { timeout: 30_000 }, () => {
  let h: KurirHarness;
  before(async () => {
    h = await startKurir();
  });
  after(async () => {
    await h?.close();
  });

  test('waits in the delayed set, polled, with no attempt spent', async () => {
    const id = `ver_${randomBytes(12).toString('hex')}`;
    const queue = h.kurir.services.queues.queue(SEND_QUEUE.sms);
    await h.kurir.services.queues.enqueueSend('sms', { verificationId: id, delivery: 1 });
    const seen = new Set<string>();
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) {
      const job = await queue.getJob(jobIds.send(id, 1));
      assert.ok(job !== undefined, 'the job is still there');
      assert.equal(job.attemptsMade, 0, 'an attempt was spent waiting for the record');
      seen.add(await job.getState());
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // It was run and put back more than once within 1.5 s (polled every 100 ms).
    assert.ok(seen.has('delayed'), `states seen: ${[...seen].join(', ')}`);
    const job = await queue.getJob(jobIds.send(id, 1));
    assert.ok((job?.attemptsStarted ?? 0) >= 3, `started ${job?.attemptsStarted} times`);
    assert.equal(h.simulator.messages().length, 0);
    await job?.remove().catch(() => undefined);
  });
});
