import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Policy } from '../common/config/policy.js';
import type { Channel } from '../common/domain/channel.js';
import { dispatchFallback } from '../common/delivery/fallback.js';
import { nextChannel } from '../common/domain/verification.js';
import { sendJobSchema } from '../common/jobs/catalogue.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { maskDestination } from '../common/observability/mask.js';
import type { Metrics } from '../common/observability/metrics.js';
import { ProviderError, type MessagingProvider } from '../common/providers/provider.js';
import type { CodeVault } from '../common/security/code-vault.js';
import type { KeySpace } from '../common/store/keys.js';
import { externalIdFor, type RedisClient, type VerificationStore } from '../common/store/verification.store.js';
import { composeMessage } from './compose-message.js';

export interface SendDeps {
  store: VerificationStore;
  queues: JobQueues;
  provider: MessagingProvider;
  vault: CodeVault;
  policy: Policy;
  metrics: Metrics;
  logger: Logger;
  redis: RedisClient;
  keys: KeySpace;
  now: () => number;
}

export type SendOutcome =
  | { outcome: 'sent'; providerMessageId: string; timeoutArmed: boolean }
  | { outcome: 'skipped'; reason: string };

/**
 * Sends one delivery. The store's `beginSend` transition is the gate that keeps a duplicate or
 * replayed job from sending a delivery twice and a backlog from sending expired codes. Transient
 * provider errors are rethrown so BullMQ retries with backoff; permanent ones (and the last
 * retry) end the delivery, start the fallback and fail the job without further attempts.
 */
export async function handleSend(job: Job, deps: SendDeps): Promise<SendOutcome> {
  const data = sendJobSchema.parse(job.data);
  const { verificationId, delivery } = data;
  const token = `${job.id ?? ''}#${job.attemptsStarted}`;
  const begin = await deps.store.beginSend(verificationId, delivery, deps.now(), token);
  if (begin.kind !== 'go') {
    const reason = begin.kind === 'missing' ? 'missing' : begin.kind === 'stale' ? `verification_${begin.status}` : 'already_sent';
    deps.metrics.jobsSkipped.inc({ queue: job.queueName, reason: begin.kind });
    return { outcome: 'skipped', reason };
  }
  const context = begin.context;
  const log = deps.logger.child({
    verificationId,
    delivery,
    channel: context.channel,
    jobId: job.id,
    requestId: data.requestId,
    to: undefined,
  });
  const message = composeMessage(context, deps.vault.open(verificationId, context.codeSealed), {
    policy: deps.policy,
    externalId: externalIdFor(verificationId, delivery),
    now: deps.now(),
  });

  const started = performance.now();
  let sent;
  try {
    sent = await deps.provider.send(message);
  } catch (caught) {
    const error =
      caught instanceof ProviderError
        ? caught
        : new ProviderError('unexpected error while sending', { code: 'unexpected', kind: 'transient', cause: caught });
    deps.metrics.providerCallDuration.observe(
      { provider: deps.provider.name, channel: context.channel, result: 'error' },
      (performance.now() - started) / 1000,
    );
    return await onSendError(job, error, { verificationId, delivery, context, log, deps, requestId: data.requestId });
  }
  deps.metrics.providerCallDuration.observe(
    { provider: deps.provider.name, channel: context.channel, result: 'ok' },
    (performance.now() - started) / 1000,
  );
  deps.metrics.messagesSent.inc({ channel: context.channel, provider: deps.provider.name, result: 'accepted' });

  const recorded = await deps.store.markSent(verificationId, delivery, {
    provider: deps.provider.name,
    providerMessageId: sent.providerMessageId,
    status: sent.status,
    at: deps.now(),
  });
  // Arm the "no delivery receipt in time" fallback only when there is somewhere to fall back to
  // and nothing has already settled the delivery (a receipt can overtake the provider's answer).
  const settled = recorded.fellBack || ['delivered', 'read', 'failed'].includes(recorded.status);
  const armTimeout = !settled && nextChannel(context.plan, context.channel) !== undefined;
  if (armTimeout) {
    await deps.queues.armDeliveryTimeout({ verificationId, delivery }, context.deliveryTimeoutSeconds * 1000);
  }
  log.info(
    { destination: maskDestination(context.to), providerMessageId: sent.providerMessageId, timeoutArmed: armTimeout },
    'message handed to provider',
  );
  return { outcome: 'sent', providerMessageId: sent.providerMessageId, timeoutArmed: armTimeout };
}

async function onSendError(
  job: Job,
  error: ProviderError,
  scope: {
    verificationId: string;
    delivery: number;
    context: { channel: Channel; plan: Channel[]; to: string };
    log: Logger;
    deps: SendDeps;
    requestId: string | undefined;
  },
): Promise<never> {
  const { verificationId, delivery, context, log, deps } = scope;
  if (error.notOnWhatsApp) await rememberNoWhatsApp(context.to, deps);

  const hasNext = nextChannel(context.plan, context.channel) !== undefined;
  const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  const retry = error.kind === 'transient' ? !lastAttempt : error.kind === 'rate_limited' ? !hasNext && !lastAttempt : false;

  if (retry) {
    deps.metrics.messagesSent.inc({ channel: context.channel, provider: deps.provider.name, result: 'retry' });
    await deps.store.markRetry(verificationId, delivery, error.code);
    log.warn({ errorCode: error.code, kind: error.kind, attempt: job.attemptsMade + 1 }, 'send failed, will retry');
    throw error;
  }

  deps.metrics.messagesSent.inc({ channel: context.channel, provider: deps.provider.name, result: 'failed' });
  const reason = error.kind === 'transient' ? 'failed' : 'rejected';
  const fallback = await deps.store.fallback(verificationId, delivery, reason, deps.now(), error.code);
  log.warn({ errorCode: error.code, kind: error.kind, fallback: fallback.kind }, 'send failed for good');
  await dispatchFallback(fallback, { verificationId, from: context.channel, reason, requestId: scope.requestId }, deps);
  throw new UnrecoverableError(`${context.channel} delivery failed: ${error.code}`);
}

/** Meta said the number has no WhatsApp (131026): route later verifications straight to SMS. */
async function rememberNoWhatsApp(to: string, deps: SendDeps): Promise<void> {
  const days = deps.policy.routing.noWhatsAppCacheDays;
  if (days <= 0) return;
  await deps.redis.set(deps.keys.noWhatsApp(deps.vault.mac('no-whatsapp', to)), '1', 'EX', Math.round(days * 86400));
}
