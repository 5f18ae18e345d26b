import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../common/config/env.js';
import { MAX_TTL_SECONDS, routeForCountry, tenantPolicy, type Policy } from '../common/config/policy.js';
import type { Channel } from '../common/domain/channel.js';
import { parseDestination, type Destination } from '../common/domain/destination.js';
import { effectiveStatus, type Verification } from '../common/domain/verification.js';
import { KurirError } from '../common/errors.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { resolveLocale } from '../common/messages/messages.js';
import { maskDestination } from '../common/observability/mask.js';
import { countryLabel, type Metrics } from '../common/observability/metrics.js';
import type { CodeVault } from '../common/security/code-vault.js';
import type { KeySpace } from '../common/store/keys.js';
import type { CheckStatus, RedisClient, VerificationStore } from '../common/store/verification.store.js';
import { VERIFICATION_ID, checkSchema, createVerificationSchema, resendSchema, zodIssues } from './schemas.js';

/**
 * The verification endpoints as plain functions: `(input, deps) → {status, body, headers}`.
 * Express only translates (api/app.ts); everything here can be called directly in tests.
 */
export interface VerificationDeps {
  config: Pick<Config, 'secret' | 'delivery'>;
  policy: Policy;
  store: VerificationStore;
  queues: JobQueues;
  vault: CodeVault;
  metrics: Metrics;
  logger: Logger;
  redis: RedisClient;
  keys: KeySpace;
  now: () => number;
}

export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

interface Caller {
  tenant: string;
  requestId: string;
}

function validationError(error: import('zod').ZodError): KurirError {
  return new KurirError('validation_failed', 'The request body does not match the schema.', { errors: zodIssues(error) });
}

/** Idempotency: the same tenant and key always name the same verification id. */
function verificationIdFor(secret: string, tenant: string, idempotencyKey: string | undefined): string {
  if (idempotencyKey === undefined) return `ver_${randomBytes(12).toString('hex')}`;
  const digest = createHmac('sha256', secret).update(`idempotency\0${tenant}\0${idempotencyKey}`).digest('hex');
  return `ver_${digest.slice(0, 24)}`;
}

/** Stable digest of the validated request (keys sorted), to spot a reused Idempotency-Key. */
function fingerprint(value: unknown): string {
  const canonical = JSON.stringify(value, (_key, inner: unknown) =>
    inner !== null && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : inner,
  );
  return createHash('sha256').update(canonical).digest('base64url');
}

function planFor(
  destination: Destination,
  requested: Channel | 'auto' | undefined,
  routePlan: Channel[],
  knownNoWhatsApp: boolean,
): { plan: Channel[]; reason: 'initial' | 'user_choice' } {
  if (destination.kind === 'email') {
    if (requested !== undefined && requested !== 'auto' && requested !== 'email') {
      throw new KurirError('channel_not_allowed', `Channel "${requested}" cannot reach an email address.`);
    }
    return { plan: ['email'], reason: 'initial' };
  }
  if (requested === 'email') throw new KurirError('channel_not_allowed', 'Channel "email" needs an email address in `to`.');
  if (requested === undefined || requested === 'auto') {
    // Meta already told us this number has no WhatsApp: do not spend a timeout finding out again.
    const plan = knownNoWhatsApp ? routePlan.filter((channel) => channel !== 'whatsapp') : routePlan;
    return { plan: plan.length > 0 ? plan : ['sms'], reason: 'initial' };
  }
  // The end user picked the channel: it goes first; the policy's later channels stay as fallbacks.
  const index = routePlan.indexOf(requested);
  return { plan: index >= 0 ? routePlan.slice(index) : [requested, ...routePlan], reason: 'user_choice' };
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** The public view of a verification, with its delivery timeline. */
export function presentVerification(verification: Verification, now: number) {
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

export async function createVerification(
  input: { body: unknown; idempotencyKey: string | undefined; caller: Caller },
  deps: VerificationDeps,
): Promise<Reply> {
  const parsed = createVerificationSchema.safeParse(input.body);
  if (!parsed.success) throw validationError(parsed.error);
  const request = parsed.data;
  const { tenant } = input.caller;
  const tenantRules = tenantPolicy(deps.policy, tenant);

  const destination = parseDestination(request.to);
  if (destination === 'number_type_not_allowed') {
    throw new KurirError('destination_not_allowed', 'Codes are sent to mobile numbers only (no fixed-line, premium-rate or shared-cost numbers).', { reason: destination });
  }
  if (typeof destination === 'string') {
    throw new KurirError('invalid_destination', destination === 'invalid_email'
      ? '`to` is not a valid email address.'
      : '`to` must be a valid phone number in E.164 format (e.g. +6281234567890) or an email address.', { reason: destination });
  }
  const purpose = tenantRules.purposes[request.purpose];
  if (purpose === undefined) {
    throw new KurirError('unknown_purpose', `Purpose "${request.purpose}" is not configured.`, {
      allowed: Object.keys(tenantRules.purposes).sort(),
    });
  }

  const route = routeForCountry(deps.policy, destination.country, deps.config.delivery.timeoutSeconds);
  const knownNoWhatsApp =
    destination.kind === 'phone' &&
    (await deps.redis.exists(deps.keys.noWhatsApp(deps.vault.mac('no-whatsapp', destination.value)))) === 1;
  const { plan, reason } = planFor(destination, request.channel, route.plan, knownNoWhatsApp);
  const firstChannel = plan[0] ?? 'sms';
  const locale = resolveLocale(request.locale, destination.country, deps.policy);
  const ttlSeconds = Math.min(request.ttlSeconds ?? purpose.ttlSeconds, MAX_TTL_SECONDS);
  const codeLength = request.codeLength ?? tenantRules.codeLength;

  const now = deps.now();
  const id = verificationIdFor(deps.config.secret, tenant, input.idempotencyKey);
  const requestFingerprint = fingerprint(request);
  const code = deps.vault.generate(codeLength);
  const created = await deps.store.create({
    id,
    tenant,
    to: destination.value,
    kind: destination.kind,
    country: destination.country,
    purpose: request.purpose,
    locale,
    plan,
    firstChannel,
    firstReason: reason,
    maxAttempts: tenantRules.maxAttempts,
    codeLength,
    deliveryTimeoutSeconds: route.deliveryTimeoutSeconds,
    codeMac: deps.vault.mac(id, code),
    codeSealed: deps.vault.seal(id, code),
    createdAt: now,
    expiresAt: now + ttlSeconds * 1000,
    fingerprint: requestFingerprint,
  });

  if (!created.created) {
    if (created.fingerprint !== requestFingerprint) {
      throw new KurirError('idempotency_key_reused', 'This Idempotency-Key was used with a different request body.');
    }
    const existing = await deps.store.get(id);
    if (existing === undefined) throw new KurirError('service_unavailable', 'Try again.', { retryAfterSeconds: 1 });
    // Re-queue the first delivery: if the original request died between storing and queueing,
    // the replay completes it; otherwise the deterministic job id makes this a no-op.
    const first = existing.deliveries[0];
    if (first !== undefined && first.status === 'queued' && effectiveStatus(existing, now) === 'pending') {
      await deps.queues.enqueueSend(first.channel, { verificationId: id, delivery: 1, requestId: input.caller.requestId });
    }
    return {
      status: 202,
      body: presentVerification(existing, now),
      headers: { 'Idempotent-Replayed': 'true', Location: `/v1/verifications/${id}` },
    };
  }

  try {
    await deps.queues.enqueueSend(firstChannel, { verificationId: id, delivery: 1, requestId: input.caller.requestId });
  } catch (error) {
    // Without its job the verification would never be sent: remove it so nothing half-created remains.
    await deps.store.discard(id).catch(() => undefined);
    throw new KurirError('service_unavailable', 'Could not queue the message; nothing was created.', { retryAfterSeconds: 1 }, { cause: error });
  }

  deps.metrics.verificationsCreated.inc({
    tenant,
    purpose: request.purpose,
    channel: firstChannel,
    country: countryLabel(destination.country),
  });
  deps.logger.info(
    { verificationId: id, tenant, purpose: request.purpose, plan, locale, destination: maskDestination(destination.value), requestId: input.caller.requestId },
    'verification created',
  );
  const body = {
    id,
    status: 'pending',
    to: destination.value,
    purpose: request.purpose,
    locale,
    plan,
    channel: firstChannel,
    attemptsRemaining: tenantRules.maxAttempts,
    createdAt: iso(now),
    expiresAt: iso(now + ttlSeconds * 1000),
  };
  return { status: 202, body, headers: { Location: `/v1/verifications/${id}` } };
}

function notFound(): KurirError {
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
const CHECK_ANSWERS: Record<CheckStatus, { status: string; valid: boolean; metric: string }> = {
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
  const now = deps.now();
  const result = VERIFICATION_ID.test(input.id)
    ? await deps.store.check(input.id, input.caller.tenant, deps.vault.mac(input.id, parsed.data.code), now)
    : { status: 'not_found' as const, attemptsRemaining: 0, ended: false };
  const answer = CHECK_ANSWERS[result.status];
  deps.metrics.checks.inc({ tenant: input.caller.tenant, result: answer.metric });
  if (result.ended) await recordEnd(input.id, result.status, now, deps);
  return {
    status: 200,
    body: { id: input.id, status: answer.status, valid: answer.valid, attemptsRemaining: result.attemptsRemaining },
  };
}

async function recordEnd(id: string, status: string, now: number, deps: VerificationDeps): Promise<void> {
  const verification = await deps.store.get(id);
  if (verification === undefined) return;
  deps.metrics.verificationsEnded.inc({ tenant: verification.tenant, purpose: verification.purpose, status });
  if (status === 'approved') {
    const channel = verification.deliveries.at(-1)?.channel ?? 'sms';
    deps.metrics.timeToVerify.observe({ channel, purpose: verification.purpose }, (now - verification.createdAt) / 1000);
  }
  deps.logger.info({ verificationId: id, status, tenant: verification.tenant }, 'verification ended');
}

export async function resendVerification(
  input: { id: string; body: unknown; caller: Caller },
  deps: VerificationDeps,
): Promise<Reply> {
  const parsed = resendSchema.safeParse(input.body ?? {});
  if (!parsed.success) throw validationError(parsed.error);
  if (!VERIFICATION_ID.test(input.id)) throw notFound();
  const now = deps.now();
  const result = await deps.store.resend(input.id, input.caller.tenant, parsed.data.channel, now, {
    cooldownMs: deps.policy.resend.cooldownSeconds * 1000,
    maxSends: deps.policy.resend.maxSendsPerVerification,
  });
  switch (result.kind) {
    case 'ok':
      await deps.queues.enqueueSend(result.channel, { verificationId: input.id, delivery: result.delivery, requestId: input.caller.requestId });
      deps.logger.info({ verificationId: input.id, delivery: result.delivery, channel: result.channel }, 'resend queued');
      return { status: 202, body: { id: input.id, status: 'pending', delivery: result.delivery, channel: result.channel } };
    case 'not_found':
      throw notFound();
    case 'not_pending':
      throw new KurirError('verification_not_pending', `The verification is ${result.status}.`, { verificationStatus: result.status });
    case 'cooldown': {
      const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
      throw new KurirError('resend_cooldown', `Wait ${seconds} s before asking for another code.`, { retryAfterSeconds: seconds });
    }
    case 'max_sends':
      throw new KurirError('max_sends_reached', 'This verification reached its maximum number of sends; create a new one.');
    case 'channel_not_allowed':
      throw new KurirError('channel_not_allowed', 'That channel cannot reach this destination.');
  }
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
