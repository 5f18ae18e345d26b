import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { VerificationEvents } from '../callbacks/verification-events.js';
import type { Policy } from '../config/policy.js';
import { jobIds } from '../jobs/catalogue.js';
import type { JobQueues } from '../jobs/queues.js';
import { countryLabel, type Metrics } from '../observability/metrics.js';
import type { Receipt } from '../providers/provider.js';
import { recordDelivered } from '../stats/stats-recorder.js';
import { parseExternalId, type DeliveredFacts, type VerificationStore } from '../store/verification.store.js';
import { dispatchFallback } from './fallback.js';
import type { StatsStore } from '../stats/stats.store.js';

/**
 * Applying one provider delivery receipt, wherever it comes from: the webhook request itself
 * (api/webhooks.handler.ts) or a receipt job an earlier version queued (worker/receipt.handler.ts).
 *
 * Safe to run any number of times for the same receipt — the provider retries, a 503 makes it
 * retry, two webhook requests can race — because every step is idempotent: the store's RECEIPT
 * script moves a delivery forward only (a repeat changes nothing) and returns the fallback
 * decision of a failed delivery again, the fallback's send job has a deterministic id and the
 * send gate, the `delivered` callback is claimed by the receipt's event (`receiptOwner`), and the
 * delivered stats are claimed once per delivery, by the RECEIPT script itself.
 */

/**
 * A receipt as the provider adapter parsed it, with the provider's event id (the same on every
 * retry of the event) and the provider's name (the key of the message-id index).
 */
export type IncomingReceipt = Receipt & { eventId: string; provider: string };

export interface ReceiptDeps {
  store: VerificationStore;
  queues: JobQueues;
  metrics: Metrics;
  logger: Logger;
  /** Stats and cost: the price table and the per-minute counters. */
  policy: Policy;
  stats: StatsStore;
  now: () => number;
}

export type ReceiptOutcome =
  | { outcome: 'applied'; status: string; fallback: string | undefined; deliveredAfterFallback: boolean }
  | { outcome: 'skipped'; reason: 'unknown_message' | 'missing_delivery' | 'not_newer' };

/**
 * Who claims the verification's `delivered` callback for this receipt: derived from the event id
 * alone, so the provider's retry of the same event (or the queued job an earlier version made of
 * it, whose job id this is) may claim again and queue what a crash left unqueued.
 */
export function receiptOwner(eventId: string): string {
  return jobIds.receipt(createHash('sha256').update(eventId).digest('hex').slice(0, 40));
}

/**
 * Applies one receipt and does its follow-up work: the fallback's send for a `failed` receipt (the
 * store decided it in the same atomic step), the callback, disarming the delivery timeout and the
 * latency/cost/stats of the first delivered state. Throws when Redis fails, after which running it
 * again is the way to finish.
 */
export async function applyReceipt(receipt: IncomingReceipt, deps: ReceiptDeps): Promise<ReceiptOutcome> {
  // Correlate by our externalId first: a receipt can beat the worker that stores the message id.
  const target =
    (receipt.externalId === undefined ? undefined : parseExternalId(receipt.externalId)) ??
    (await deps.store.findByProviderMessage(receipt.provider, receipt.providerMessageId));
  if (target === undefined) return { outcome: 'skipped', reason: 'unknown_message' };
  const { id, delivery } = target;
  const result = await deps.store.applyReceipt(
    id,
    delivery,
    { status: receipt.status, at: receipt.occurredAt, errorCode: receipt.errorCode, providerMessageId: receipt.providerMessageId },
    deps.now(),
  );
  if (result.status === 'missing') return { outcome: 'skipped', reason: 'missing_delivery' };
  // Bound per call rather than as a child logger: two receipts per message, most logging one line.
  const context = { verificationId: id, delivery, channel: receipt.channel, eventId: receipt.eventId };
  if (result.fallback !== undefined) {
    // Also on a repeat (`already`): the deterministic job id and the send gate make it harmless.
    await dispatchFallback(result.fallback, { verificationId: id, from: receipt.channel, reason: 'failed' }, deps);
  }
  const delivered = result.status === 'delivered' || result.status === 'read';
  if (!result.changed) {
    // A repeat finishes what an interrupted first run of this receipt may have left undone.
    if (delivered) await afterDelivered(id, delivery, result.firstDelivered, receiptOwner(receipt.eventId), deps);
    return { outcome: 'skipped', reason: 'not_newer' };
  }
  deps.metrics.receipts.inc({ channel: receipt.channel, status: result.status });
  if (result.deliveredAfterFallback) {
    deps.metrics.lateReceipts.inc({ channel: receipt.channel });
    deps.logger.info(context, 'delivered after the fallback went out (double send)');
  }
  if (delivered) {
    const first = result.firstDelivered;
    await afterDelivered(id, delivery, first, receiptOwner(receipt.eventId), deps);
    // Back to the expiry when nothing waits for a timeout any more; otherwise disarm finds out.
    const restAt = first?.timerIdle === true ? first.expiresAt : undefined;
    await deps.queues.disarmDeliveryTimeout(id, delivery, restAt).catch((error: unknown) => {
      // A timeout that still fires re-checks the state and does nothing; losing this race is fine.
      deps.logger.debug({ ...context, err: error }, 'delivery timeout could not be disarmed');
    });
  }
  // The outcome of a delivery (delivered, read, failed) at info; the provider's steps on the way
  // (accepted, sent: one more line per message) at debug.
  const outcome = delivered || result.status === 'failed';
  deps.logger[outcome ? 'info' : 'debug']({ ...context, status: result.status, fallback: result.fallback?.kind }, 'receipt applied');
  return {
    outcome: 'applied',
    status: result.status,
    fallback: result.fallback?.kind,
    deliveredAfterFallback: result.deliveredAfterFallback,
  };
}

/**
 * Follow-up of a delivered/read receipt: the delivery's first delivered state is timed, billed and
 * counted (by the call whose RECEIPT script claimed it, `first`, with the facts that script read),
 * and the verification's `delivered` callback is queued (claimed once per verification, by
 * `owner`). The callback claim is skipped only when this call counted the delivery and found no
 * callback URL; otherwise a repeat of the receipt may be finishing what its first run left undone.
 * (A run that dies between the claim and the count loses that delivery's stats: they are a
 * by-product, never retried at the price of counting twice.)
 */
async function afterDelivered(id: string, n: number, first: DeliveredFacts | undefined, owner: string, deps: ReceiptDeps): Promise<void> {
  if (first !== undefined) await countDelivered(first, deps);
  if (first === undefined || first.hasCallback) await new VerificationEvents(deps).delivered(id, n, owner);
}

/** The first delivered/read state of a delivery: its latency, the WhatsApp charge and the stats. */
async function countDelivered(first: DeliveredFacts, deps: ReceiptDeps): Promise<void> {
  const country = countryLabel(first.country);
  if (first.latencySeconds !== undefined) deps.metrics.deliveryLatency.observe({ channel: first.channel, country }, first.latencySeconds);
  await recordDelivered(deps, { tenant: first.tenant, country, channel: first.channel, latencySeconds: first.latencySeconds });
}
