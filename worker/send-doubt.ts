import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Channel } from '../common/domain/channel.js';
import { dispatchFallback } from '../common/delivery/fallback.js';
import { nextChannel } from '../common/domain/verification.js';
import { isLastAttempt } from '../common/jobs/processor.js';
import { ProviderError, type LookupResult, type SendResult } from '../common/providers/provider.js';
import type { SendDoubt } from '../common/store/verification.store.js';
import type { SendDeps } from './send.handler.js';

/** How far back to search when the record predates the call-start stamp (an upgrade). */
const UNKNOWN_START_LOOKBACK_MS = 10 * 60_000;

/**
 * What to do with a delivery that an earlier call may already have sent:
 * - `send`: the provider says it does not have it, or it cannot tell and there is no other
 *   channel (the delivery is at-least-once then; see RELIABILITY.md);
 * - `adopt`: the provider has it — record that answer instead of sending it again;
 * - `done`: it was handled here (moved on to the next channel, or failed at the provider).
 */
export type DoubtDecision = { action: 'send' } | { action: 'adopt'; sent: SendResult } | { action: 'done'; reason: string };

interface DoubtScope {
  verificationId: string;
  delivery: number;
  externalId: string;
  context: { channel: Channel; plan: Channel[] };
  requestId: string | undefined;
  log: Logger;
  deps: SendDeps;
}

/**
 * Asks the provider before sending again. A worker that died mid-call most likely lost only the
 * provider's answer (it is usually ≥ 30 s later — BullMQ's stall check — and no receipt came,
 * but a receipt that did come would have ended this delivery already). Where the provider cannot
 * be asked (WhatsApp: messages can only be fetched by the id we lost), such a delivery moves on to
 * the next channel rather than risk a second copy. A retry after a timeout is different: the
 * backoff gave receipts their chance, and acceptance of such retries is the provider-fault
 * contract, so it is re-sent where it cannot be checked.
 */
export async function settleDoubt(job: Job, doubt: SendDoubt, scope: DoubtScope): Promise<DoubtDecision> {
  const { deps, context, log } = scope;
  const now = deps.now();
  const count = (resolution: string) =>
    deps.metrics.sendsInDoubt.inc({ channel: context.channel, cause: doubt.cause, resolution });
  // Ends this delivery as failed and starts the next channel, as a failed receipt would.
  const failOver = async (errorCode: string) => {
    const fallback = await deps.store.fallback(scope.verificationId, scope.delivery, 'failed', now, errorCode);
    await dispatchFallback(fallback, { verificationId: scope.verificationId, from: context.channel, reason: 'failed', requestId: scope.requestId }, deps);
  };

  let answer: LookupResult;
  try {
    answer = await deps.provider.lookup({
      channel: context.channel,
      externalId: scope.externalId,
      sentBetween: { from: doubt.callStartedAt ?? now - UNKNOWN_START_LOOKBACK_MS, to: now },
    });
  } catch (caught) {
    const error = caught instanceof ProviderError ? caught : undefined;
    if (!isLastAttempt(job)) {
      // Still in doubt: the next attempt asks again.
      await deps.store.markRetry(scope.verificationId, scope.delivery, error?.code ?? 'lookup_failed', true);
      log.warn({ errorCode: error?.code, cause: doubt.cause }, 'could not ask the provider about an earlier send; will retry');
      throw caught;
    }
    answer = { kind: 'unknown', reason: `lookup failed: ${error?.code ?? 'unexpected'}` };
  }

  if (answer.kind === 'found') {
    count('found');
    log.info({ cause: doubt.cause, providerMessageId: answer.sent.providerMessageId }, 'earlier send found at the provider: not sent again');
    if (answer.sent.status !== 'failed') return { action: 'adopt', sent: answer.sent };
    await failOver('undelivered');
    return { action: 'done', reason: 'failed_at_provider' };
  }
  if (answer.kind === 'absent') {
    count('absent');
    log.info({ cause: doubt.cause }, 'earlier send not at the provider: sending');
    return { action: 'send' };
  }
  if (doubt.cause === 'worker_lost' && nextChannel(context.plan, context.channel) !== undefined) {
    count('fell_back');
    log.warn({ cause: doubt.cause, reason: answer.reason }, 'earlier send cannot be checked: moving to the next channel');
    await failOver('in_doubt');
    return { action: 'done', reason: 'in_doubt_fell_back' };
  }
  count('resent');
  log.warn({ cause: doubt.cause, reason: answer.reason }, 'earlier send cannot be checked: sending again');
  return { action: 'send' };
}
