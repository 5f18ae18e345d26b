import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { VerificationEvents } from '../common/callbacks/verification-events.js';
import { dispatchFallback } from '../common/delivery/fallback.js';
import { receiptJobSchema } from '../common/jobs/catalogue.js';
import type { JobQueues } from '../common/jobs/queues.js';
import type { Policy } from '../common/config/policy.js';
import { countryLabel, type Metrics } from '../common/observability/metrics.js';
import { claimFirstDelivered, recordDelivered } from '../common/stats/stats-recorder.js';
import type { KeySpace } from '../common/store/keys.js';
import { parseExternalId, type RedisClient, type VerificationStore } from '../common/store/verification.store.js';

export interface ReceiptDeps {
  store: VerificationStore;
  queues: JobQueues;
  metrics: Metrics;
  logger: Logger;
  /** Stats and cost: the price table, and Redis for the per-minute counters. */
  policy: Policy;
  redis: RedisClient;
  keys: KeySpace;
  now: () => number;
}

export type ReceiptOutcome =
  | { outcome: 'applied'; status: string; fallback: string | undefined; deliveredAfterFallback: boolean }
  | { outcome: 'skipped'; reason: 'unknown_message' | 'missing_delivery' | 'not_newer' };

/**
 * Applies one delivery receipt. The store moves the delivery forward only (duplicates and
 * out-of-order receipts change nothing), starts the fallback for a `failed` receipt in the same
 * atomic step, and flags a delivered receipt that arrives after a fallback (a double send).
 */
export async function handleReceipt(job: Job, deps: ReceiptDeps): Promise<ReceiptOutcome> {
  const receipt = receiptJobSchema.parse(job.data);
  // Correlate by our externalId first: a receipt can beat the worker that stores the message id.
  const target =
    (receipt.externalId === undefined ? undefined : parseExternalId(receipt.externalId)) ??
    (await deps.store.findByProviderMessage(receipt.provider, receipt.providerMessageId));
  if (target === undefined) {
    deps.metrics.jobsSkipped.inc({ queue: job.queueName, reason: 'unknown_message' });
    return { outcome: 'skipped', reason: 'unknown_message' };
  }
  const { id, delivery } = target;
  const result = await deps.store.applyReceipt(id, delivery, {
    status: receipt.status,
    at: receipt.occurredAt,
    errorCode: receipt.errorCode,
    providerMessageId: receipt.providerMessageId,
  }, deps.now());
  if (result.status === 'missing') {
    deps.metrics.jobsSkipped.inc({ queue: job.queueName, reason: 'missing_delivery' });
    return { outcome: 'skipped', reason: 'missing_delivery' };
  }
  const log = deps.logger.child({ verificationId: id, delivery, channel: receipt.channel, jobId: job.id });
  if (result.fallback !== undefined) {
    await dispatchFallback(result.fallback, { verificationId: id, from: receipt.channel, reason: 'failed' }, deps);
  }
  if (result.status === 'delivered' || result.status === 'read') {
    // Before the "not newer" exit, for the same reason as the fallback above: the event is claimed
    // by this job, so its retry may queue it again; any other receipt finds the claim taken.
    await new VerificationEvents(deps).delivered(id, delivery, job.id ?? `receipt-${receipt.eventId}`);
  }
  if (!result.changed) {
    // A retried job lands here after its first run applied the receipt; keep re-dispatching the
    // fallback above (idempotent) but count nothing twice.
    return { outcome: 'skipped', reason: 'not_newer' };
  }
  deps.metrics.receipts.inc({ channel: receipt.channel, status: result.status });
  if (result.deliveredAfterFallback) {
    deps.metrics.lateReceipts.inc({ channel: receipt.channel });
    log.info('delivered after the fallback went out (double send)');
  }
  if (result.status === 'delivered' || result.status === 'read') {
    await deps.queues.disarmDeliveryTimeout(id, delivery).catch((error: unknown) => {
      // A timer that is already running re-checks the state and does nothing; losing this race is fine.
      log.debug({ err: error }, 'delivery timeout could not be removed');
    });
    await onDelivered(id, delivery, deps);
  }
  log.info({ status: result.status, fallback: result.fallback?.kind }, 'receipt applied');
  return {
    outcome: 'applied',
    status: result.status,
    fallback: result.fallback?.kind,
    deliveredAfterFallback: result.deliveredAfterFallback,
  };
}

/**
 * The first delivered/read state of a delivery: its latency, the WhatsApp charge and the stats.
 * A delivered → read change lands here too, so a claim keeps all of them to once per delivery.
 */
async function onDelivered(id: string, n: number, deps: ReceiptDeps): Promise<void> {
  if (!(await claimFirstDelivered(deps, id, n))) return;
  const verification = await deps.store.get(id);
  const delivery = verification?.deliveries.find((candidate) => candidate.n === n);
  if (verification === undefined || delivery === undefined) return;
  const country = countryLabel(verification.country);
  const latencySeconds =
    delivery.sentAt === undefined || delivery.deliveredAt === undefined ? undefined : Math.max(0, (delivery.deliveredAt - delivery.sentAt) / 1000);
  if (latencySeconds !== undefined) deps.metrics.deliveryLatency.observe({ channel: delivery.channel, country }, latencySeconds);
  await recordDelivered(deps, { tenant: verification.tenant, country, channel: delivery.channel, latencySeconds });
}
