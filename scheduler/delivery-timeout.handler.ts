import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { dispatchFallback } from '../common/delivery/fallback.js';
import { deliveryTimeoutJobSchema } from '../common/jobs/catalogue.js';
import type { JobQueues } from '../common/jobs/queues.js';
import type { Metrics } from '../common/observability/metrics.js';
import type { VerificationStore } from '../common/store/verification.store.js';

export interface DeliveryTimeoutDeps {
  store: VerificationStore;
  queues: JobQueues;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
}

export type DeliveryTimeoutOutcome = { outcome: 'fallback' | 'delivered' | 'already' | 'exhausted' | 'ended' | 'missing' };

/**
 * A delivery's own timeout job, when the verification's timer could not be moved to its deadline
 * (JobQueues.armDeliveryTimeout). Fires when the delivery produced no delivered/read receipt
 * within its timeout; see fireDeliveryTimeout.
 */
export async function handleDeliveryTimeout(job: Job, deps: DeliveryTimeoutDeps): Promise<DeliveryTimeoutOutcome> {
  const { verificationId, delivery } = deliveryTimeoutJobSchema.parse(job.data);
  const kind = await fireDeliveryTimeout(verificationId, delivery, deps);
  if (kind !== 'fallback' && kind !== 'already') deps.metrics.jobsSkipped.inc({ queue: job.queueName, reason: kind });
  return { outcome: kind };
}

/**
 * Delivery `n` is past its timeout. The store decides atomically whether it is still undelivered
 * and whether a fallback already went out (a failed receipt may have raced this timer), so this
 * can run any number of times safely, from the delivery's timeout job or the verification's timer.
 */
export async function fireDeliveryTimeout(
  verificationId: string,
  delivery: number,
  deps: DeliveryTimeoutDeps,
): Promise<DeliveryTimeoutOutcome['outcome']> {
  const result = await deps.store.fallback(verificationId, delivery, 'timeout', deps.now());
  if (result.kind === 'fallback' || result.kind === 'already') {
    const verification = await deps.store.get(verificationId);
    const from = verification?.deliveries.find((candidate) => candidate.n === delivery)?.channel ?? 'whatsapp';
    await dispatchFallback(result, { verificationId, from, reason: 'timeout' }, deps);
  }
  return result.kind;
}
