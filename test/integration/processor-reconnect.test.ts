/**
 * A worker whose Redis went away and came back fetches jobs again within a couple of seconds. BullMQ
 * pauses a worker's fetching for 15 s (`runRetryDelay`) when a command fails on a lost
 * connection, which would hold every OTP queued meanwhile; the workers' connections
 * (redis-connection.ts, role `workers`: `maxRetriesPerRequest: null`) retry their commands after
 * reconnecting instead, so that pause is never reached — on one Redis killed and started again and
 * on a Redis Cluster whose primary for the queue is lost and back. This keeps it so.
 */
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { QUEUES } from '../../common/jobs/catalogue.js';
import { queueOptions } from '../../common/jobs/queues.js';
import { closeWorkers, startProcessor } from '../../common/jobs/processor.js';
import { createKeySpace, type KeySpace } from '../../common/store/keys.js';
import { createRedisConnection, type RedisTopology } from '../../common/store/redis-connection.js';
import { startPrivateRedis, type PrivateRedis } from '../helpers/chaos/redis-server.js';
import { keySlot, redisClusterUnavailable, startRedisCluster } from '../helpers/redis-cluster.js';
import { freshPrefix } from '../helpers/redis.js';

let redis: PrivateRedis;

before(async () => {
  redis = await startPrivateRedis();
});
after(async () => {
  await redis?.close();
});

/**
 * One worker and one producer on `topology`; a job before, the outage (`lose`, then `regain`),
 * a job after it: how long after Redis was back the second job ran.
 */
async function msToResume(topology: RedisTopology, keys: KeySpace, lose: () => Promise<void>, regain: () => Promise<void>): Promise<number> {
  // As a worker role connects: waits and reconnects forever.
  const connection = createRedisConnection(topology, 'workers', 'kt-reconnect-worker');
  connection.on('error', () => undefined);
  const processed = new Map<string, number>();
  const worker = startProcessor({
    queue: QUEUES.callbacks,
    keys,
    connection,
    concurrency: 4,
    logger: pino({ level: 'silent' }),
    handler: async (job) => {
      processed.set(job.id ?? '', Date.now());
      return undefined;
    },
  });
  const producerConnection = createRedisConnection(topology, 'workers', 'kt-reconnect-producer');
  producerConnection.on('error', () => undefined);
  const queue = new Queue(QUEUES.callbacks, queueOptions(keys, QUEUES.callbacks, producerConnection));
  queue.on('error', () => undefined);
  const processedBy = async (id: string, deadline: number): Promise<number | undefined> => {
    while (Date.now() < deadline) {
      const at = processed.get(id);
      if (at !== undefined) return at;
      await delay(20);
    }
    return undefined;
  };
  try {
    await queue.add('callback', {}, { jobId: 'before' });
    assert.notEqual(await processedBy('before', Date.now() + 10_000), undefined, 'the worker never processed a job at all');
    // Lost while the worker waits for jobs on its blocking connection.
    await lose();
    await regain();
    const back = Date.now();
    await queue.add('callback', {}, { jobId: 'after' });
    const at = await processedBy('after', back + 20_000);
    assert.ok(at !== undefined, 'the job added after Redis came back was not processed within 20 s');
    return at - back;
  } finally {
    await closeWorkers([worker]);
    await queue.close();
    connection.disconnect();
    producerConnection.disconnect();
  }
}

test('one Redis killed and started again: the worker fetches again within 3 s', { timeout: 60_000 }, async (t) => {
  const ms = await msToResume(
    { kind: 'single', url: redis.url },
    createKeySpace(freshPrefix('reconnect')),
    async () => {
      await redis.stop('SIGKILL');
      await delay(1000);
    },
    () => redis.start(),
  );
  t.diagnostic(`processed ${ms} ms after Redis was back`);
  assert.ok(ms < 3000, `processed ${ms} ms after Redis came back (BullMQ's own pause is 15 s)`);
});

test("a Cluster primary lost and back: the worker fetches again within 3 s", { timeout: 90_000 }, async (t) => {
  const unavailable = redisClusterUnavailable();
  if (unavailable !== undefined) {
    t.skip(unavailable);
    return;
  }
  const cluster = await startRedisCluster();
  try {
    // The primary that holds the queue's keys (BullMQ's hash tag is the queue prefix).
    const keys = createKeySpace(freshPrefix('reconnect'));
    const probe = cluster.client();
    const slots = await probe.cluster('SLOTS');
    probe.disconnect();
    const slot = keySlot(`${keys.queuePrefix(QUEUES.callbacks)}:callbacks:wait`);
    const owner = slots.find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1];
    assert.ok(owner !== undefined, `no primary serves slot ${slot}`);
    const ms = await msToResume(
      { kind: 'cluster', nodes: cluster.ports.map((port) => ({ host: '127.0.0.1', port })), password: undefined },
      keys,
      async () => {
        cluster.signal(owner, 'SIGKILL');
        await delay(2000);
      },
      () => cluster.restart(owner),
    );
    t.diagnostic(`processed ${ms} ms after the primary was back`);
    assert.ok(ms < 3000, `processed ${ms} ms after the primary came back (BullMQ's own pause is 15 s)`);
  } finally {
    await cluster.close();
  }
});
