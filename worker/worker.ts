import type { ConnectionOptions, Worker } from 'bullmq';
import type { QueueRole } from '../common/config/env.js';
import { QUEUES } from '../common/jobs/catalogue.js';
import { closeWorkers, startProcessor } from '../common/jobs/processor.js';
import type { Policy } from '../common/config/policy.js';
import { CHANNELS } from '../common/domain/channel.js';
import { SEND_QUEUE } from '../common/jobs/catalogue.js';
import { handleCallback, type CallbackDeps } from './callback.handler.js';
import { handleReceipt } from './receipt.handler.js';
import { handleSend, type SendDeps } from './send.handler.js';

export interface WorkerRole {
  close(): Promise<void>;
  workers: readonly Worker[];
}

/** The policy's provider cap for a send queue (global across processes); none for the others. */
function throughputOf(queue: QueueRole, policy: Policy): number | undefined {
  const channel = CHANNELS.find((candidate) => SEND_QUEUE[candidate] === queue);
  return channel === undefined ? undefined : policy.throughput[channel];
}

/** Starts the processors for the queues this process serves (`WORKER_QUEUES`). */
export function startWorkerRole(
  deps: SendDeps & CallbackDeps,
  options: { queues: readonly QueueRole[]; concurrency: number; connection: ConnectionOptions },
): WorkerRole {
  const workers = options.queues.map((queue) =>
    startProcessor({
      queue,
      keys: deps.keys,
      connection: options.connection,
      concurrency: options.concurrency,
      logger: deps.logger,
      maxPerSecond: throughputOf(queue, deps.policy),
      handler: (job, token): Promise<unknown> =>
        queue === QUEUES.receipts ? handleReceipt(job, deps) : queue === QUEUES.callbacks ? handleCallback(job, deps) : handleSend(job, deps, token),
    }),
  );
  let closing: Promise<void> | undefined;
  return {
    workers,
    close: () => (closing ??= closeWorkers(workers)),
  };
}
