/**
 * Closing BullMQ workers right after starting them (a SIGTERM just after a role started) against
 * the real Redis: nothing may escape as an unhandled rejection, which would end the process.
 */
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { QUEUES } from '../../common/jobs/catalogue.js';
import { closeWorkers, startProcessor } from '../../common/jobs/processor.js';
import { createKeySpace } from '../../common/store/keys.js';
import { TEST_REDIS_URL, withRedisPrefix } from '../helpers/redis.js';

test('workers closed while still connecting shut down without an unhandled rejection', async () => {
  const escaped: unknown[] = [];
  const onRejection = (reason: unknown) => void escaped.push(reason);
  process.on('unhandledRejection', onRejection);
  try {
    await withRedisPrefix('kt-close-early', async (_redis, prefix) => {
      for (let round = 0; round < 30; round += 1) {
        // As the roles do: one lazily connecting connection shared by the workers.
        const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null, lazyConnect: true });
        const workers = [QUEUES.verificationExpiry, QUEUES.deliveryTimeout, QUEUES.callbacks].map((queue) =>
          startProcessor({ queue, keys: createKeySpace(prefix), connection, concurrency: 2, logger: pino({ level: 'silent' }), handler: async () => undefined }),
        );
        await delay(round % 10);
        await closeWorkers(workers);
        connection.disconnect();
      }
      // A rejection of an interrupted setup surfaces a moment after close returned.
      await delay(200);
    });
  } finally {
    process.off('unhandledRejection', onRejection);
  }
  assert.deepEqual(escaped.map((reason) => (reason instanceof Error ? reason.message : String(reason))), []);
});
