import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { tenantPolicy, type Policy } from '../common/config/policy.js';
import type { Channel } from '../common/domain/channel.js';
import { dispatchFallback } from '../common/delivery/fallback.js';
import { nextChannel } from '../common/domain/verification.js';
import { sendJobSchema, type SendJob } from '../common/jobs/catalogue.js';
import { isLastAttempt } from '../common/jobs/processor.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { maskDestination } from '../common/observability/mask.js';
import { countryLabel, type Metrics } from '../common/observability/metrics.js';
import { ProviderError, type MessagingProvider, type OutboundMessage, type SendResult } from '../common/providers/provider.js';
import type { DailyBudget } from '../common/security/budget.js';
import type { CodeVault } from '../common/security/code-vault.js';
import type { KeySpace } from '../common/store/keys.js';
import { recordSent } from '../common/stats/stats-recorder.js';
import { externalIdFor, type BeginSendResult, type RedisClient, type VerificationStore } from '../common/store/verification.store.js';
import { composeMessage } from './compose-message.js';
import { settleDoubt } from './send-doubt.js';
import type { StatsStore } from '../common/stats/stats.store.js';

export interface SendDeps {
  store: VerificationStore;
  budget: DailyBudget;
  queues: JobQueues;
  provider: MessagingProvider;
  vault: CodeVault;
  policy: Policy;
  metrics: Metrics;
  logger: Logger;
  redis: RedisClient;
  keys: KeySpace;
  stats: StatsStore;
  now: () => number;
}

/**
 * A backlogged send whose code has less than this left is dropped (counted as stale) rather than
 * delivered: the user could not type it in time, and it would arrive after a newer one.
 */
export const MIN_CODE_LIFETIME_MS = 10_000;

/**
 * How long a send waits for its verification record. The API queues the first send just before it
 * stores the record, so a fast worker can get there first; a record still missing after this
 * was never stored (the create failed between the two steps and answered 503).
 */
export const RECORD_WAIT_MS = 10_000;
const RECORD_POLL_MS = 100;

export type SendOutcome =
  | { outcome: 'sent'; providerMessageId: string; timeoutArmed: boolean }
  | { outcome: 'skipped'; reason: string };

/**
 * Sends one delivery. The store's `beginSend` transition is the gate that keeps a duplicate or
 * replayed job from sending a delivery twice and a backlog from sending expired codes. Transient
 * provider errors are rethrown so BullMQ retries with backoff; permanent ones (and the last
 * retry) end the delivery, start the fallback and fail the job without further attempts.
 */
export async function handleSend(job: Job, deps: SendDeps, lockToken?: string): Promise<SendOutcome> {
  const data = sendJobSchema.parse(job.data);
  const { verificationId, delivery } = data;
  const token = `${job.id ?? ''}#${job.attemptsStarted}`;
  const begin = await deps.store.beginSend(verificationId, delivery, deps.now(), token, MIN_CODE_LIFETIME_MS);
  if (begin.kind === 'missing' && lockToken !== undefined && deps.now() - job.timestamp < RECORD_WAIT_MS) {
    // Back to the delayed set for a moment, without spending one of the job's send attempts
    // (a retry would: under load a provider failure then got one attempt fewer).
    await job.moveToDelayed(deps.now() + RECORD_POLL_MS, lockToken);
    throw new DelayedError();
  }
  if (begin.kind !== 'go') {
    // Too late to send (the workers were away): the timer still has to end it at its expiry.
    if (begin.kind === 'stale' && begin.pendingUntil !== undefined) await deps.queues.scheduleExpiry(verificationId, begin.pendingUntil);
    const reason = begin.kind === 'missing' ? 'missing' : begin.kind === 'stale' ? `verification_${begin.status}` : 'already_sent';
    deps.metrics.jobsSkipped.inc({ queue: job.queueName, reason: begin.kind });
    return { outcome: 'skipped', reason };
  }
  const context = begin.context;
  // The verification's timer (the API queues none). The first delivery arms it once this run's
  // outcome is known, in one command: at its deadline when it went out and may fall back, at the
  // expiry otherwise. A later delivery's timer exists already (it is moved to its deadline); the
  // arming here is then a no-op, kept for a delivery that runs first (a resend taken while the
  // workers were away).
  const timer: TimerState = { armed: false };
  if (delivery > 1) {
    await deps.queues.scheduleExpiry(verificationId, context.expiresAt);
    timer.armed = true;
  }
  try {
    const outcome = await deliver(job, { data, begin, timer }, deps);
    if (!timer.armed) await deps.queues.scheduleExpiry(verificationId, context.expiresAt);
    return outcome;
  } catch (error) {
    // A run that ends the job arms it too; one that BullMQ retries leaves it to the retry.
    if (!timer.armed && (error instanceof UnrecoverableError || isLastAttempt(job))) {
      await deps.queues.scheduleExpiry(verificationId, context.expiresAt).catch(() => undefined);
    }
    throw error;
  }
}

/** Whether this run armed (or moved) the verification's timer. */
interface TimerState {
  armed: boolean;
}

/** One delivery taken by this run (`beginSend` said go): budget, doubt, the provider call. */
async function deliver(
  job: Job,
  run: { data: SendJob; begin: Extract<BeginSendResult, { kind: 'go' }>; timer: TimerState },
  deps: SendDeps,
): Promise<SendOutcome> {
  const { data, begin, timer } = run;
  const { context } = begin;
  const { verificationId, delivery } = data;
  const log = deps.logger.child({
    verificationId,
    delivery,
    channel: context.channel,
    jobId: job.id,
    requestId: data.requestId,
    to: undefined,
  });
  const externalId = externalIdFor(verificationId, delivery);
  // An earlier run already counted this delivery against the budget when it is in doubt.
  if (job.attemptsMade === 0 && begin.doubt === undefined) {
    const refused = await overBudget(context, { verificationId, delivery, log, deps, requestId: data.requestId });
    if (refused) return { outcome: 'skipped', reason: 'budget_exhausted' };
  }
  const message = composeMessage(context, deps.vault.open(verificationId, context.codeSealed), {
    policy: deps.policy,
    externalId,
    now: deps.now(),
  });
  if (begin.doubt !== undefined) {
    const decision = await settleDoubt(job, begin.doubt, { verificationId, delivery, externalId, context, requestId: data.requestId, log, deps });
    if (decision.action === 'done') return { outcome: 'skipped', reason: decision.reason };
    if (decision.action === 'adopt') return await recordAccepted(decision.sent, message, { verificationId, delivery, context, log, deps, timer });
  }

  const started = performance.now();
  let sent;
  try {
    sent = await deps.provider.send(message);
  } catch (caught) {
    const error =
      caught instanceof ProviderError
        ? caught
        : new ProviderError('unexpected error while sending', { code: 'unexpected', kind: 'transient', outcomeUnknown: true, cause: caught });
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
  return await recordAccepted(sent, message, { verificationId, delivery, context, log, deps, timer });
}

/**
 * Records the provider's acceptance (from its answer, or found by a lookup after a lost answer)
 * and arms the timeout. Counted after the state write: a worker that dies before it leaves the
 * delivery in doubt, and the run that settles the doubt counts it instead.
 */
async function recordAccepted(
  sent: SendResult,
  message: OutboundMessage,
  scope: {
    verificationId: string;
    delivery: number;
    context: { channel: Channel; plan: Channel[]; to: string; country: string | undefined; tenant: string; deliveryTimeoutSeconds: number; expiresAt: number };
    log: Logger;
    deps: SendDeps;
    timer: TimerState;
  },
): Promise<SendOutcome> {
  const { verificationId, delivery, context, log, deps, timer } = scope;
  const recorded = await deps.store.markSent(verificationId, delivery, {
    provider: deps.provider.name,
    providerMessageId: sent.providerMessageId,
    status: sent.status,
    at: deps.now(),
  });
  deps.metrics.messagesSent.inc({ channel: context.channel, provider: deps.provider.name, result: 'accepted' });
  // The country stored at create: no second parse of the number.
  await recordSent(deps, { tenant: context.tenant, country: countryLabel(context.country), message });
  // Arm the "no delivery receipt in time" fallback only when there is somewhere to fall back to
  // and nothing has already settled the delivery (a receipt can overtake the provider's answer).
  const settled = recorded.fellBack || ['delivered', 'read', 'failed'].includes(recorded.status);
  const armTimeout = !settled && nextChannel(context.plan, context.channel) !== undefined;
  if (armTimeout) {
    const timeoutMs = context.deliveryTimeoutSeconds * 1000;
    // Not armed yet (a first delivery): armed at the deadline at once rather than at the expiry and moved.
    if (timer.armed) await deps.queues.armDeliveryTimeout({ verificationId, delivery }, timeoutMs, context.expiresAt);
    else await deps.queues.scheduleExpiry(verificationId, context.expiresAt, Math.min(deps.now() + timeoutMs, context.expiresAt));
    timer.armed = true;
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
    context: { channel: Channel; plan: Channel[]; to: string; tenant: string };
    log: Logger;
    deps: SendDeps;
    requestId: string | undefined;
  },
): Promise<never> {
  const { verificationId, delivery, context, log, deps } = scope;
  if (error.notOnWhatsApp) await rememberNoWhatsApp(context.tenant, context.to, deps);

  const hasNext = nextChannel(context.plan, context.channel) !== undefined;
  const lastAttempt = isLastAttempt(job);
  const retry = error.kind === 'transient' ? !lastAttempt : error.kind === 'rate_limited' ? !hasNext && !lastAttempt : false;

  if (retry) {
    deps.metrics.messagesSent.inc({ channel: context.channel, provider: deps.provider.name, result: 'retry' });
    await deps.store.markRetry(verificationId, delivery, error.code, error.outcomeUnknown);
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

/**
 * The tenant's daily budget for the channel, counted right before the provider call so that
 * creates, resends and fallbacks all count (once per delivery: retries of a failed call do not).
 * A fail-closed budget that is used up ends the delivery without a provider call and moves to
 * the next channel; a fail-open one only reports the overrun.
 */
async function overBudget(
  context: { tenant: string; channel: Channel; plan: Channel[] },
  scope: { verificationId: string; delivery: number; log: Logger; deps: SendDeps; requestId: string | undefined },
): Promise<boolean> {
  const { deps, log } = scope;
  const budget = tenantPolicy(deps.policy, context.tenant).security.budgets[context.channel];
  const limit = budget.failClosed ? budget.dailyMessages : null;
  const decision = await deps.budget.consume(context.tenant, context.channel, limit, deps.now());
  const rule = `budget_${context.channel}`;
  if (decision.allowed) {
    if (budget.dailyMessages !== null && decision.used > budget.dailyMessages) {
      deps.metrics.guardRefusals.inc({ tenant: context.tenant, rule, mode: 'shadow' });
      log.warn({ used: decision.used, dailyMessages: budget.dailyMessages }, 'daily budget exceeded (fail-open channel)');
    }
    return false;
  }
  deps.metrics.guardRefusals.inc({ tenant: context.tenant, rule, mode: 'enforce' });
  log.warn({ dailyMessages: budget.dailyMessages }, 'daily budget exhausted: not sent');
  const fallback = await deps.store.fallback(scope.verificationId, scope.delivery, 'rejected', deps.now(), 'budget_exhausted');
  await dispatchFallback(
    fallback,
    { verificationId: scope.verificationId, from: context.channel, reason: 'rejected', requestId: scope.requestId },
    deps,
  );
  return true;
}

/** Meta said the number has no WhatsApp (131026): route the tenant's later verifications straight to SMS. */
async function rememberNoWhatsApp(tenant: string, to: string, deps: SendDeps): Promise<void> {
  const days = deps.policy.routing.noWhatsAppCacheDays;
  if (days <= 0) return;
  await deps.redis.set(deps.keys.noWhatsApp(tenant, deps.vault.destinationMac(to)), '1', 'EX', Math.round(days * 86400));
}
