import type { Logger } from 'pino';
import type { Channel } from '../domain/channel.js';
import type { FallbackReason } from '../domain/verification.js';
import type { JobQueues } from '../jobs/queues.js';
import type { Metrics } from '../observability/metrics.js';
import type { FallbackResult } from '../store/verification.store.js';

export interface FallbackDeps {
  queues: JobQueues;
  metrics: Metrics;
  logger: Logger;
}

/**
 * Queues the send job of a fallback the store has just decided on. Also re-queues on `already`:
 * if the job that noticed the failure crashed between the store's decision and the enqueue, its
 * retry lands here, and the deterministic job id plus the send's own state check make the second
 * add harmless. Only a first decision is counted.
 */
export async function dispatchFallback(
  result: FallbackResult,
  context: { verificationId: string; from: Channel; reason: FallbackReason; requestId?: string | undefined },
  deps: FallbackDeps,
): Promise<void> {
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
  }
}
