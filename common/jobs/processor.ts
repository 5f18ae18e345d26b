import { setTimeout as delay } from 'node:timers/promises';
import { Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { KeySpace } from '../store/keys.js';
import { queueOptions, retentionOptions } from './queues.js';
import type { QueueName } from './catalogue.js';

/**
 * Starts one BullMQ worker for one queue. Failures that BullMQ will retry are logged at warn,
 * final ones at error; error messages never contain message content (providers keep it out).
 */
export function startProcessor<T>(options: {
  queue: QueueName;
  keys: KeySpace;
  connection: ConnectionOptions;
  concurrency: number;
  logger: Logger;
  /** `token` is the job's lock, for handlers that move their own job (e.g. back to delayed). */
  handler: (job: Job, token: string | undefined) => Promise<T>;
  /**
   * Global throughput cap of the queue, shared by every worker process (BullMQ keeps the
   * counter in Redis): e.g. Meta's 80 messages/s per WhatsApp sender.
   */
  maxPerSecond?: number | undefined;
}): Worker {
  const { connection, prefix } = queueOptions(options.keys, options.queue, options.connection);
  const worker = new Worker(options.queue, options.handler, {
    connection,
    prefix,
    concurrency: options.concurrency,
    ...retentionOptions(options.queue),
    // A send that stalls (process frozen or killed) is picked up again after 30 s at most.
    stalledInterval: 30_000,
    maxStalledCount: 1,
    ...(options.maxPerSecond === undefined ? {} : { limiter: { max: options.maxPerSecond, duration: 1000 } }),
  });
  worker.on('failed', (job, error) => {
    const final = job === undefined || job.finishedOn !== undefined || error.name === 'UnrecoverableError';
    options.logger[final ? 'error' : 'warn'](
      { queue: options.queue, jobId: job?.id, attemptsMade: job?.attemptsMade, err: { name: error.name, message: error.message } },
      final ? 'job failed' : 'job failed, retrying',
    );
  });
  worker.on('error', (error) => {
    options.logger.error({ queue: options.queue, err: { name: error.name, message: error.message } }, 'worker error');
  });
  return worker;
}

/** Whether the attempt now running is the job's last: a failure then is final, not retried. */
export function isLastAttempt(job: Job): boolean {
  return job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

/** How long closing waits for a worker that is still connecting (see closeWorkers). */
const READY_WAIT_MS = 2000;

/**
 * Closes workers in parallel, letting in-flight jobs finish; one failure never skips the rest.
 * A worker still setting up its connections is waited for first, briefly (with Redis away it never
 * gets there): BullMQ 5 drops a connection's listeners on close, and the setup that close then
 * interrupts rejects with nobody listening, which ends the process (a SIGTERM just after start).
 */
export async function closeWorkers(workers: readonly Worker[]): Promise<void> {
  await Promise.all(
    workers.map((worker) => Promise.race([worker.waitUntilReady().catch(() => undefined), delay(READY_WAIT_MS, undefined, { ref: false })])),
  );
  const results = await Promise.allSettled(workers.map((worker) => worker.close()));
  const failure = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}
