import type { ConnectionOptions, Worker } from 'bullmq';
import type { QueueRole } from '../common/config/env.js';
import { QUEUES } from '../common/jobs/catalogue.js';
import { closeWorkers, startProcessor } from '../common/jobs/processor.js';
import { handleReceipt } from './receipt.handler.js';
import { handleSend, type SendDeps } from './send.handler.js';

export interface WorkerRole {
  close(): Promise<void>;
  workers: readonly Worker[];
}

/** Starts the processors for the queues this process serves (`WORKER_QUEUES`). */
export function startWorkerRole(
  deps: SendDeps,
  options: { queues: readonly QueueRole[]; concurrency: number; connection: ConnectionOptions },
): WorkerRole {
  const workers = options.queues.map((queue) =>
    startProcessor({
      queue,
      keys: deps.keys,
      connection: options.connection,
      concurrency: options.concurrency,
      logger: deps.logger,
      handler: (job): Promise<unknown> => (queue === QUEUES.receipts ? handleReceipt(job, deps) : handleSend(job, deps)),
    }),
  );
  let closing: Promise<void> | undefined;
  return {
    workers,
    close: () => (closing ??= closeWorkers(workers)),
  };
}
