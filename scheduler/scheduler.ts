import type { ConnectionOptions, Worker } from 'bullmq';
import { QUEUES } from '../common/jobs/catalogue.js';
import { closeWorkers, startProcessor } from '../common/jobs/processor.js';
import type { KeySpace } from '../common/store/keys.js';
import { handleDeliveryTimeout, type DeliveryTimeoutDeps } from './delivery-timeout.handler.js';

export interface SchedulerRole {
  close(): Promise<void>;
  workers: readonly Worker[];
}

/**
 * The time-driven role. Delivery timeouts are delayed BullMQ jobs: BullMQ promotes them when due
 * (from any process that runs a worker on the queue), so several schedulers can run side by side
 * and each timer still fires once.
 */
export function startSchedulerRole(
  deps: DeliveryTimeoutDeps & { keys: KeySpace },
  options: { concurrency: number; connection: ConnectionOptions },
): SchedulerRole {
  const workers = [
    startProcessor({
      queue: QUEUES.deliveryTimeout,
      keys: deps.keys,
      connection: options.connection,
      concurrency: options.concurrency,
      logger: deps.logger,
      handler: (job) => handleDeliveryTimeout(job, deps),
    }),
  ];
  let closing: Promise<void> | undefined;
  return { workers, close: () => (closing ??= closeWorkers(workers)) };
}
