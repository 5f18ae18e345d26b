import type { ConnectionOptions, Worker } from 'bullmq';
import { QUEUES } from '../common/jobs/catalogue.js';
import { closeWorkers, startProcessor } from '../common/jobs/processor.js';
import { startWatchdog } from '../common/runtime/watchdog.js';
import { handleDeliveryTimeout, type DeliveryTimeoutDeps } from './delivery-timeout.handler.js';
import { handleVerificationExpiry, type VerificationExpiryDeps } from './verification-expiry.handler.js';

/** Queue depths are sampled this often; a job ready this long with nobody taking it is an alarm. */
const WATCHDOG_INTERVAL_MS = 15_000;
const WATCHDOG_STALL_MS = 60_000;

export interface SchedulerRole {
  close(): Promise<void>;
  workers: readonly Worker[];
}

/**
 * The time-driven role. Each verification has one timer, a delayed BullMQ job due at its next
 * deadline (a delivery's timeout, else its expiry); a delivery whose deadline could not go on that
 * timer has a timeout job of its own. BullMQ promotes them when due (from any process that runs a
 * worker on the queue), so several schedulers can run side by side and each timer still fires once.
 */
export function startSchedulerRole(
  deps: DeliveryTimeoutDeps & VerificationExpiryDeps & Parameters<typeof startWatchdog>[0],
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
    startProcessor({
      queue: QUEUES.verificationExpiry,
      keys: deps.keys,
      connection: options.connection,
      concurrency: options.concurrency,
      logger: deps.logger,
      handler: (job, token) => handleVerificationExpiry(job, deps, token),
    }),
  ];
  const watchdog = startWatchdog(deps, {
    queueNames: Object.values(QUEUES),
    stallAfterMs: WATCHDOG_STALL_MS,
    verdictTtlMs: 3 * WATCHDOG_INTERVAL_MS,
    intervalMs: WATCHDOG_INTERVAL_MS,
  });
  let closing: Promise<void> | undefined;
  return {
    workers,
    close: () =>
      (closing ??= (async () => {
        watchdog.stop();
        await closeWorkers(workers);
      })()),
  };
}
