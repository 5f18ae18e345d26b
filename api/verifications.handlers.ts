import type { Logger } from 'pino';
import { VerificationEvents } from '../common/callbacks/verification-events.js';
import type { Config } from '../common/config/env.js';
import { tenantPolicy, type Policy } from '../common/config/policy.js';
import { parseDestination, type Destination } from '../common/domain/destination.js';
import { effectiveStatus, type Verification } from '../common/domain/verification.js';
import { KurirError } from '../common/errors.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { countryLabel, type Metrics } from '../common/observability/metrics.js';
import type { CodeVault } from '../common/security/code-vault.js';
import type { GuardQuarantine } from '../common/security/pumping-guard.js';
import type { SendGate } from '../common/security/send-gate.js';
import { recordEnded } from '../common/stats/stats-recorder.js';
import type { KeySpace } from '../common/store/keys.js';
import type { VerificationEnding, CheckStatus, RedisClient, StoredVerification, VerificationStore } from '../common/store/verification.store.js';
import { refusalError, retryAfterSeconds } from './refusals.js';
import { VERIFICATION_ID, checkSchema, resendSchema, zodIssues } from './schemas.js';
import type { StatsStore } from '../common/stats/stats.store.js';

/**
 * The verification endpoints as plain functions: `(input, deps) → {status, body, headers}`.
 * Express only translates (api/app.ts); everything here can be called directly in tests.
 */
export interface VerificationDeps {
  /** `production` tightens the callback URL rules (https only, no private IP literals). */
  config: Pick<Config, 'secret' | 'delivery' | 'production'>;
  policy: Policy;
  store: VerificationStore;
  queues: JobQueues;
  vault: CodeVault;
  metrics: Metrics;
  logger: Logger;
  redis: RedisClient;
  keys: KeySpace;
  stats: StatsStore;
  gate: SendGate;
  now: () => number;
}

export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface Caller {
  tenant: string;
  requestId: string;
}

export function validationError(error: import('zod').ZodError): KurirError {
  return new KurirError('validation_failed', 'The request body does not match the schema.', { errors: zodIssues(error) });
}

export function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** The public view of a verification, with its delivery timeline. */
export function presentVerification(verification: Verification & { callbackUrl?: string | undefined }, now: number) {
  const status = effectiveStatus(verification, now);
  return {
    id: verification.id,
    status,
    to: verification.to,
    purpose: verification.purpose,
    locale: verification.locale,
    plan: verification.plan,
    channel: verification.deliveries.at(-1)?.channel ?? verification.plan[0],
    attemptsRemaining: status === 'pending' ? Math.max(0, verification.maxAttempts - verification.attempts) : 0,
    createdAt: iso(verification.createdAt),
    expiresAt: iso(verification.expiresAt),
    approvedAt: iso(verification.approvedAt),
    callbackUrl: verification.callbackUrl ?? null,
    deliveries: verification.deliveries.map((delivery) => ({
      n: delivery.n,
      channel: delivery.channel,
      provider: delivery.provider ?? null,
      status: delivery.status,
      reason: delivery.reason,
      errorCode: delivery.errorCode ?? null,
      queuedAt: iso(delivery.queuedAt),
      sentAt: iso(delivery.sentAt),
      deliveredAt: iso(delivery.deliveredAt),
      failedAt: iso(delivery.failedAt),
      fellBackTo: delivery.fellBackTo ?? null,
      deliveredAfterFallback: delivery.deliveredAfterFallback,
    })),
  };
}

export function notFound(): KurirError {
  return new KurirError('not_found', 'No verification with this id.');
}

export async function getVerification(input: { id: string; caller: Caller }, deps: VerificationDeps): Promise<Reply> {
  if (!VERIFICATION_ID.test(input.id)) throw notFound();
  const verification = await deps.store.get(input.id);
  // Another tenant's verification is answered exactly like an unknown id.
  if (verification === undefined || verification.tenant !== input.caller.tenant) throw notFound();
  return { status: 200, body: presentVerification(verification, deps.now()) };
}

/** What a check answers for each store outcome: unknown, consumed and expired look the same. */
const CHECK_ANSWERS: Record<Exclude<CheckStatus, 'locked'>, { status: string; valid: boolean; metric: string }> = {
  approved: { status: 'approved', valid: true, metric: 'approved' },
  pending: { status: 'pending', valid: false, metric: 'wrong_code' },
  max_attempts: { status: 'max_attempts', valid: false, metric: 'max_attempts' },
  expired: { status: 'expired', valid: false, metric: 'expired' },
  canceled: { status: 'canceled', valid: false, metric: 'canceled' },
  consumed: { status: 'expired', valid: false, metric: 'consumed' },
  not_found: { status: 'expired', valid: false, metric: 'not_found' },
};

export async function checkVerification(
  input: { id: string; body: unknown; caller: Caller },
  deps: VerificationDeps,
): Promise<Reply> {
  const parsed = checkSchema.safeParse(input.body);
  if (!parsed.success) throw validationError(parsed.error);
  const { tenant } = input.caller;
  const now = deps.now();
  const lockout = tenantPolicy(deps.policy, tenant).security.lockout;
  const result = VERIFICATION_ID.test(input.id)
    ? await deps.store.check(input.id, tenant, deps.vault.mac(input.id, parsed.data.code), now, lockout)
    : { status: 'not_found' as const, attemptsRemaining: 0, ended: false, lockMs: 0 };
  if (result.status === 'locked') {
    deps.metrics.checks.inc({ tenant, result: 'locked' });
    throw refusalError({ kind: 'lockout', rule: 'destination_lockout', retryAfterMs: result.lockMs, silenceable: true });
  }
  const answer = CHECK_ANSWERS[result.status];
  deps.metrics.checks.inc({ tenant, result: answer.metric });
  if (result.lockMs > 0 && result.status !== 'approved') {
    deps.metrics.guardRefusals.inc({ tenant, rule: 'destination_lockout', mode: 'enforce' });
    deps.logger.warn({ tenant, verificationId: input.id, lockedForMs: result.lockMs }, 'destination locked after repeated wrong codes');
  }
  if (result.ended) {
    await (result.ending === undefined
      ? recordEnd(input.id, result.status, now, deps)
      : reportEnd(input.id, result.status, now, { tenant, ...result.ending }, deps));
  }
  return {
    status: 200,
    body: { id: input.id, status: answer.status, valid: answer.valid, attemptsRemaining: result.attemptsRemaining },
  };
}

/** What reporting an ending needs: the check's own reply carries it, otherwise the record does. */
type Ending = VerificationEnding & { tenant: string };

async function recordEnd(id: string, status: string, now: number, deps: VerificationDeps): Promise<void> {
  const verification = await deps.store.get(id);
  if (verification === undefined) return;
  const ending: Ending = {
    tenant: verification.tenant,
    purpose: verification.purpose,
    country: verification.country,
    to: verification.to,
    kind: verification.kind,
    createdAt: verification.createdAt,
    channel: verification.deliveries.at(-1)?.channel ?? 'sms',
    hasCallback: verification.callbackUrl !== undefined,
  };
  await reportEnd(id, status, now, ending, deps, verification);
}

/** Metrics, stats, the pumping guard's conversion and the callback event of an ended verification. */
async function reportEnd(id: string, status: string, now: number, ending: Ending, deps: VerificationDeps, loaded?: StoredVerification): Promise<void> {
  const { tenant, purpose, channel } = ending;
  const country = countryLabel(ending.country);
  deps.metrics.verificationsEnded.inc({ tenant, purpose, status, country });
  const approved = status === 'approved';
  const timeToVerifySeconds = (now - ending.createdAt) / 1000;
  if (approved) deps.metrics.timeToVerify.observe({ channel, purpose }, timeToVerifySeconds);
  deps.logger.info({ verificationId: id, status, tenant }, 'verification ended');
  // Independent writes, issued together.
  const stats = { tenant, country, channel, status, timeToVerifySeconds: approved ? timeToVerifySeconds : undefined };
  await Promise.all([
    recordEnded(deps, stats),
    approved ? recordApproval(ending, now, deps) : undefined,
    (status === 'approved' || status === 'expired') && ending.hasCallback ? emitEnded(id, status, deps, loaded) : undefined,
  ]);
}

/**
 * The pumping guard's conversion count of an approval (batched, as its `/v1/stats` counters are).
 * Like every stats write, a failure is logged and never fails the check, whose code was already
 * accepted.
 */
async function recordApproval(ending: Ending, now: number, deps: VerificationDeps): Promise<void> {
  try {
    await deps.gate.recordApproval(ending.tenant, destinationOf(ending), tenantPolicy(deps.policy, ending.tenant).security, ending.createdAt, now);
  } catch (error) {
    deps.logger.warn({ tenant: ending.tenant, err: { message: error instanceof Error ? error.message : String(error) } }, 'approval could not be recorded');
  }
}

/** The stored destination as the gate sees it (stored already normalised: no parsing again). */
function destinationOf(ending: Ending): Destination {
  return ending.kind === 'email'
    ? { kind: 'email', value: ending.to, country: undefined }
    : { kind: 'phone', value: ending.to, country: ending.country };
}

/** The callback event of an approval or expiry; it needs the whole record (a rare case: only verifications with a callback URL). */
async function emitEnded(id: string, status: 'approved' | 'expired', deps: VerificationDeps, loaded: StoredVerification | undefined): Promise<void> {
  try {
    const verification = loaded ?? (await deps.store.get(id));
    if (verification !== undefined) await new VerificationEvents(deps).ended(verification, status);
  } catch (error) {
    // The check has been answered by the store already; a lost event must not turn it into a 5xx.
    deps.logger.error(
      { verificationId: id, status, err: { message: error instanceof Error ? error.message : String(error) } },
      'callback event could not be queued',
    );
  }
}

export async function resendVerification(
  input: { id: string; body: unknown; caller: Caller },
  deps: VerificationDeps,
): Promise<Reply> {
  const parsed = resendSchema.safeParse(input.body ?? {});
  if (!parsed.success) throw validationError(parsed.error);
  if (!VERIFICATION_ID.test(input.id)) throw notFound();
  const { tenant } = input.caller;
  const now = deps.now();
  const verification = await deps.store.get(input.id);
  if (verification === undefined || verification.tenant !== tenant) throw notFound();
  const destination = parseDestination(verification.to);
  if (typeof destination === 'string') throw notFound();
  const channel = parsed.data.channel ?? verification.deliveries.at(-1)?.channel ?? verification.plan[0] ?? 'sms';
  const limits = { cooldownMs: deps.policy.resend.cooldownSeconds * 1000, maxSends: deps.policy.resend.maxSendsPerVerification };

  // The verification's own rules answer first (they are the most specific); the store re-checks
  // them atomically below, this only keeps a too-early resend from spending a send limit.
  const status = effectiveStatus(verification, now);
  if (status !== 'pending') throw new KurirError('verification_not_pending', `The verification is ${status}.`, { verificationStatus: status });
  if (verification.lastSendAt + limits.cooldownMs > now) throw cooldownError(verification.lastSendAt + limits.cooldownMs - now);

  const security = tenantPolicy(deps.policy, tenant).security;
  const eventId = `${input.id}-r${verification.deliveries.length + 1}`;
  const gate = await deps.gate.admit({
    tenant,
    destination,
    destinationMac: deps.vault.destinationMac(destination.value),
    ip: undefined,
    channels: [channel],
    eventId,
    security,
    now,
  });
  reportQuarantines(gate.newQuarantines, tenant, security.pumping.mode, deps);
  // A silenced refusal answers like a resend that went out; nothing is queued for it.
  const silenced = !gate.admitted && security.refusals === 'silent' && gate.refusal.silenceable;
  if (!gate.admitted) {
    deps.metrics.guardRefusals.inc({ tenant, rule: gate.refusal.rule, mode: 'enforce' });
    if (!silenced) throw refusalError(gate.refusal);
  }
  const result = await deps.store.resend(input.id, tenant, channel, now, limits);
  if (result.kind !== 'ok' && gate.admitted) await deps.gate.cancel(gate, eventId);
  switch (result.kind) {
    case 'ok':
      if (!result.decoy && !silenced) {
        await deps.queues.enqueueSend(result.channel, { verificationId: input.id, delivery: result.delivery, requestId: input.caller.requestId });
        // The end user switching channels is a fallback of its own kind (reason user_choice).
        const previous = verification.deliveries.at(-1)?.channel;
        if (previous !== undefined && previous !== result.channel) {
          deps.metrics.fallbacks.inc({ from: previous, to: result.channel, reason: 'user_choice' });
        }
      }
      deps.logger.info({ verificationId: input.id, delivery: result.delivery, channel: result.channel }, 'resend queued');
      return { status: 202, body: { id: input.id, status: 'pending', delivery: result.delivery, channel: result.channel } };
    case 'not_found':
      throw notFound();
    case 'not_pending':
      throw new KurirError('verification_not_pending', `The verification is ${result.status}.`, { verificationStatus: result.status });
    case 'cooldown':
      throw cooldownError(result.retryAfterMs);
    case 'locked': {
      // The lock lives with the verification (lockout.ts), so the store's script is what tells.
      const refusal = { kind: 'lockout', rule: 'destination_lockout', retryAfterMs: result.retryAfterMs, silenceable: true } as const;
      deps.metrics.guardRefusals.inc({ tenant, rule: refusal.rule, mode: 'enforce' });
      if (security.refusals !== 'silent') throw refusalError(refusal);
      // Silenced, as a refusal by the gate is: answered like a resend that went out, nothing stored or queued.
      return { status: 202, body: { id: input.id, status: 'pending', delivery: verification.deliveries.length + 1, channel } };
    }
    case 'max_sends':
      throw new KurirError('max_sends_reached', 'This verification reached its maximum number of sends; create a new one.');
    case 'channel_not_allowed':
      throw new KurirError('channel_not_allowed', 'That channel cannot reach this destination.');
  }
}

/** Counts and logs the pumping quarantines a send just created, once each. */
export function reportQuarantines(
  quarantines: readonly GuardQuarantine[],
  tenant: string,
  mode: string,
  deps: Pick<VerificationDeps, 'metrics' | 'logger'>,
): void {
  for (const quarantine of quarantines) {
    deps.metrics.quarantines.inc({ tenant, dimension: quarantine.subject.dimension, mode: quarantine.shadow ? 'shadow' : mode });
    deps.logger.warn(
      { tenant, dimension: quarantine.subject.dimension, value: quarantine.subject.value, reason: quarantine.reason, shadow: quarantine.shadow },
      quarantine.shadow ? 'pumping guard would quarantine a number range (shadow mode)' : 'pumping guard quarantined a number range',
    );
  }
}

function cooldownError(retryAfterMs: number): KurirError {
  const seconds = retryAfterSeconds(retryAfterMs);
  return new KurirError('resend_cooldown', `Wait ${seconds} s before asking for another code.`, { retryAfterSeconds: seconds });
}

export async function cancelVerification(input: { id: string; caller: Caller }, deps: VerificationDeps): Promise<Reply> {
  if (!VERIFICATION_ID.test(input.id)) throw notFound();
  const now = deps.now();
  const result = await deps.store.cancel(input.id, input.caller.tenant, now);
  if (result.kind === 'not_found') throw notFound();
  if (result.kind === 'not_pending') {
    throw new KurirError('verification_not_pending', `The verification is ${result.status}.`, { verificationStatus: result.status });
  }
  await recordEnd(input.id, 'canceled', now, deps);
  return { status: 200, body: { id: input.id, status: 'canceled' } };
}
