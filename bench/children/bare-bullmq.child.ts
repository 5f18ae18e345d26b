/**
 * Bare baseline (2): BullMQ add + no-op processing with Kurir's connection layout — one producer
 * connection (Kurir's API adds every job over its one command connection) and one Worker with
 * Kurir's concurrency (it opens its own blocking connection, as Kurir's workers do), the same
 * retention and retry options as `common/jobs/queues.ts` and a deterministic job id per job.
 *
 * Driven over IPC: `{cmd: 'run', jobs, inFlight}` → `{type: 'result', jobs, seconds, jobsPerSecond,
 * addSeconds, cpuSeconds}`; `{cmd: 'close'}` → `{type: 'closed'}`. Env: REDIS_URL, BENCH_PREFIX,
 * BENCH_CONCURRENCY.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUES } from '../../common/jobs/catalogue.js';
import { queueOptions, retentionOptions } from '../../common/jobs/queues.js';
import { createKeySpace } from '../../common/store/keys.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `{${process.env.BENCH_PREFIX ?? 'kbench-bullmq'}}`;
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 20);
const name = 'bare';

const producer = new Redis(url, { maxRetriesPerRequest: 1 });
const workerConnection = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true });
// Kurir's own options for its WhatsApp send queue (retries, event stream cap; retention on the worker), not a copy.
const kurirOptions = queueOptions(createKeySpace('kbench'), QUEUES.sendWhatsapp, producer);
const queue = new Queue(name, {
  connection: producer,
  prefix,
  defaultJobOptions: kurirOptions.defaultJobOptions,
  streams: kurirOptions.streams,
});

let completed = 0;
let onCompleted: (() => void) | undefined;
const worker = new Worker(name, async () => undefined, {
  connection: workerConnection,
  prefix,
  concurrency,
  ...retentionOptions(QUEUES.sendWhatsapp),
  stalledInterval: 30_000,
  maxStalledCount: 1,
});
worker.on('completed', () => {
  completed += 1;
  onCompleted?.();
});

let serial = 0;

async function run(jobs: number, inFlight: number) {
  const cpuBefore = process.cpuUsage();
  completed = 0;
  const allDone = new Promise<void>((resolve) => {
    onCompleted = () => {
      if (completed >= jobs) resolve();
    };
  });
  const started = performance.now();
  let next = 0;
  // `inFlight` adds at a time, like the API's concurrent requests each adding one job.
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < jobs) {
        next += 1;
        serial += 1;
        await queue.add('send', { verificationId: `ver_${serial.toString(16).padStart(24, '0')}`, delivery: 1, requestId: 'bench' }, { jobId: `send-${serial}-1` });
      }
    }),
  );
  const addSeconds = (performance.now() - started) / 1000;
  await allDone;
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return { type: 'result', jobs, seconds, jobsPerSecond: jobs / seconds, addSeconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

process.on('message', (raw: unknown) => {
  const message = raw as { cmd: string; jobs?: number; inFlight?: number };
  if (message.cmd === 'run') {
    run(message.jobs ?? 5000, message.inFlight ?? 32).then(
      (result) => process.send?.(result),
      (error: unknown) => process.send?.({ type: 'error', error: String(error) }),
    );
  } else if (message.cmd === 'close') {
    (async () => {
      await worker.close();
      await queue.close();
      await Promise.allSettled([producer.quit(), workerConnection.quit()]);
      process.send?.({ type: 'closed' });
      process.disconnect();
    })().catch((error: unknown) => process.send?.({ type: 'error', error: String(error) }));
  }
});

Promise.all([producer.ping(), worker.waitUntilReady()]).then(
  () => process.send?.({ type: 'ready' }),
  (error: unknown) => process.send?.({ type: 'error', error: String(error) }),
);
