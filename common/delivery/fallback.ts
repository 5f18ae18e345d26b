import type { Logger } from 'pino';
import { VerificationEvents } from '../callbacks/verification-events.js';
import type { Channel } from '../domain/channel.js';
import type { FallbackReason } from '../domain/verification.js';
import type { JobQueues } from '../jobs/queues.js';
import type { Metrics } from '../observability/metrics.js';
import { recordFallback } from '../stats/stats-recorder.js';
import type { StatsStore } from '../stats/stats.store.js';
import type { FallbackResult, VerificationStore } from '../store/verification.store.js';

export interface FallbackDeps {
  store: VerificationStore;
  queues: JobQueues;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
  /**
   * For the `/v1/stats` fallback count. Every process passes its services, which have it;
   * optional so the delivery timeout's narrower deps and tests of the event flow still fit.
   */
  stats?: StatsStore;
}

/**
 * Queues the send job of a fallback the store has just decided on. Also re-queues on `already`:
 * if the job that noticed the failure crashed between the store's decision and the enqueue, its
 * retry lands here, and the deterministic job id plus the send's own state check make the second
 * add harmless. Only a first decision is counted.
 *
 * Callback events: `verification.fallback` for a fallback (on `already` too, for the same crash
 * reason; the event's job id makes it once), `verification.failed` when the failed delivery was
 * the plan's last channel (`exhausted`).
 */
export async function dispatchFallback(
  result: FallbackResult,
  context: { verificationId: string; from: Channel; reason: FallbackReason; requestId?: string | undefined },
  deps: FallbackDeps,
): Promise<void> {
  if (result.kind === 'exhausted') {
    // Only a failure ends the plan: no timer is armed without a next channel.
    if (context.reason !== 'timeout') await new VerificationEvents(deps).failed(context.verificationId);
    return;
  }
  if (result.kind !== 'fallback' && result.kind !== 'already') return;
  await deps.queues.enqueueSend(result.channel, {
    verificationId: context.verificationId,
    delivery: result.delivery,
    ...(context.requestId === undefined ? {} : { requestId: context.requestId }),
  });
  if (result.kind === 'fallback') {
    deps.metrics.fallbacks.inc({ from: context.from, to: result.channel, reason: context.reason });
    deps.logger.info(
      { verificationId: context.verificationId, delivery: result.delivery, from: context.from, to: result.channel, reason: context.reason },
      'fallback started',
    );
    if (deps.stats !== undefined) await recordFallback({ ...deps, stats: deps.stats }, { verificationId: context.verificationId, from: context.from });
  }
  await new VerificationEvents(deps).fallback(context.verificationId, result.delivery);
}
