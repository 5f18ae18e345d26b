import { createHash, createHmac } from 'node:crypto';
import { checkCallbackUrl } from '../common/callbacks/callback-url.js';
import { MAX_TTL_SECONDS, routeForCountry, tenantPolicy, type EffectivePolicy } from '../common/config/policy.js';
import type { Channel, Locale } from '../common/domain/channel.js';
import { parseDestination, receivesCodes, type Destination } from '../common/domain/destination.js';
import { effectiveStatus, type Verification } from '../common/domain/verification.js';
import { KurirError } from '../common/errors.js';
import { resolveLocale } from '../common/messages/messages.js';
import { maskDestination } from '../common/observability/mask.js';
import { countryLabel } from '../common/observability/metrics.js';
import type { Refusal } from '../common/security/send-gate.js';
import { randomHex } from '../common/security/random-pool.js';
import { recordCreated } from '../common/stats/stats-recorder.js';
import { refusalError } from './refusals.js';
import { verificationId } from '../common/store/keys.js';
import type { NewVerification } from '../common/store/verification.store.js';
import { createVerificationSchema, type CreateVerificationRequest } from './schemas.js';
import { iso, reportQuarantines, validationError, type Caller, type Reply, type VerificationDeps } from './verifications.handlers.js';

/**
 * `POST /v1/verifications`: validate, route, pass the send gate (geo, a reused Idempotency-Key,
 * pumping guard, budget, limits), queue its first delivery and store the verification atomically
 * — unless its destination is locked after repeated wrong codes, which the store's script knows
 * (the lock lives with the destination's verifications, lockout.ts). Nothing is stored or queued
 * for a refused request, so a refusal never costs a message.
 */

/**
 * The id's own part (after the destination's tag, keys.ts): random, or with an Idempotency-Key
 * the same for the same tenant and key — so a retry names the same verification.
 */
function idOwnPart(secret: string, tenant: string, idempotencyKey: string | undefined): string {
  if (idempotencyKey === undefined) return randomHex(12);
  return createHmac('sha256', secret).update(`idempotency\0${tenant}\0${idempotencyKey}`).digest('hex').slice(0, 24);
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

/** The 202 body; an idempotent replay answers the same shape with the current status. */
function createdBody(verification: Pick<Verification, 'id' | 'to' | 'purpose' | 'locale' | 'plan' | 'maxAttempts' | 'attempts' | 'createdAt' | 'expiresAt'> & { status: string; channel: Channel }) {
  return {
    id: verification.id,
    status: verification.status,
    to: verification.to,
    purpose: verification.purpose,
    locale: verification.locale,
    plan: verification.plan,
    channel: verification.channel,
    attemptsRemaining: verification.status === 'pending' ? Math.max(0, verification.maxAttempts - verification.attempts) : 0,
    createdAt: iso(verification.createdAt),
    expiresAt: iso(verification.expiresAt),
  };
}

interface Draft {
  id: string;
  tenant: string;
  destination: Destination;
  destinationMac: string;
  request: CreateVerificationRequest;
  plan: Channel[];
  reason: 'initial' | 'user_choice';
  locale: Locale;
  ttlSeconds: number;
  codeLength: number;
  deliveryTimeoutSeconds: number;
  rules: EffectivePolicy;
  fingerprint: string;
  /** The validated, normalised callback URL, if the request had one. */
  callbackUrl: string | undefined;
  now: number;
}

function record(draft: Draft, deps: VerificationDeps, decoy: boolean): NewVerification {
  const code = deps.vault.generate(draft.codeLength);
  return {
    id: draft.id,
    tenant: draft.tenant,
    to: draft.destination.value,
    kind: draft.destination.kind,
    country: draft.destination.country,
    purpose: draft.request.purpose,
    locale: draft.locale,
    plan: draft.plan,
    firstChannel: draft.plan[0] ?? 'sms',
    firstReason: draft.reason,
    maxAttempts: draft.rules.maxAttempts,
    codeLength: draft.codeLength,
    deliveryTimeoutSeconds: draft.deliveryTimeoutSeconds,
    codeMac: deps.vault.mac(draft.id, code),
    codeSealed: deps.vault.seal(draft.id, code),
    createdAt: draft.now,
    expiresAt: draft.now + draft.ttlSeconds * 1000,
    fingerprint: draft.fingerprint,
    destinationMac: draft.destinationMac,
    decoy,
    callbackUrl: draft.callbackUrl,
  };
}

function accepted(draft: Draft): Reply {
  return {
    status: 202,
    body: createdBody({
      id: draft.id,
      status: 'pending',
      to: draft.destination.value,
      purpose: draft.request.purpose,
      locale: draft.locale,
      plan: draft.plan,
      channel: draft.plan[0] ?? 'sms',
      maxAttempts: draft.rules.maxAttempts,
      attempts: 0,
      createdAt: draft.now,
      expiresAt: draft.now + draft.ttlSeconds * 1000,
    }),
    headers: { Location: `/v1/verifications/${draft.id}` },
  };
}

/**
 * A refusal the tenant asked to keep silent: store a decoy that answers exactly like a real
 * verification (202, then wrong-code answers until it dies) but is never sent, so probing numbers
 * reveals nothing. Rate limits are never silent: a well-behaved client must learn to back off.
 */
async function refuse(draft: Draft, refusal: Refusal, deps: VerificationDeps): Promise<Reply> {
  const mode = draft.rules.security.refusals;
  deps.metrics.guardRefusals.inc({ tenant: draft.tenant, rule: refusal.rule, mode: 'enforce' });
  deps.logger.warn(
    {
      tenant: draft.tenant,
      rule: refusal.rule,
      destination: maskDestination(draft.destination.value),
      ...(refusal.kind === 'quarantine' ? { subject: refusal.subject, reason: refusal.reason } : {}),
      silent: mode === 'silent' && refusal.silenceable,
    },
    'send refused',
  );
  if (mode !== 'silent' || !refusal.silenceable) throw refusalError(refusal);
  // Never sent, so the lockout has nothing to stop: a decoy for a locked destination is stored too.
  await deps.store.create(record(draft, deps, true), { lockout: false });
  return accepted(draft);
}

export async function createVerification(
  input: { body: unknown; idempotencyKey: string | undefined; caller: Caller },
  deps: VerificationDeps,
): Promise<Reply> {
  const parsed = createVerificationSchema.safeParse(input.body);
  if (!parsed.success) throw validationError(parsed.error);
  const request = parsed.data;
  const callbackUrl = request.callbackUrl === undefined ? undefined : callbackUrlFor(request.callbackUrl, deps.config.production);
  const { tenant } = input.caller;
  const rules = tenantPolicy(deps.policy, tenant);

  const destination = parseDestination(request.to);
  if (typeof destination === 'string') {
    throw new KurirError(
      'invalid_destination',
      destination === 'invalid_email'
        ? '`to` is not a valid email address.'
        : '`to` must be a valid phone number in E.164 format (e.g. +6281234567890) or an email address.',
      { reason: destination },
    );
  }
  // Own keys only: "constructor" must not find Object.prototype's.
  const purpose = Object.hasOwn(rules.purposes, request.purpose) ? rules.purposes[request.purpose] : undefined;
  if (purpose === undefined) {
    throw new KurirError('unknown_purpose', `Purpose "${request.purpose}" is not configured.`, {
      allowed: Object.keys(rules.purposes).sort(),
    });
  }
  const now = deps.now();
  const destinationMac = deps.vault.destinationMac(destination.value);
  const ownPart = idOwnPart(deps.config.secret, tenant, input.idempotencyKey);
  const id = verificationId(destinationMac, ownPart);

  const route = routeForCountry(deps.policy, destination.country, deps.config.delivery.timeoutSeconds);
  const { plan, reason } = planFor(destination, request.channel, route.plan, false);
  // An automatic plan, should Meta have told this tenant that the number has no WhatsApp: the
  // gate reads that hint in its script and admits this plan instead. A channel the user picked stays.
  const withoutWhatsApp =
    reason === 'initial' && plan.includes('whatsapp') ? planFor(destination, request.channel, route.plan, true).plan : undefined;
  const draft: Draft = {
    id,
    tenant,
    destination,
    destinationMac,
    request,
    plan,
    reason,
    locale: resolveLocale(request.locale, destination.country, deps.policy),
    ttlSeconds: Math.min(request.ttlSeconds ?? purpose.ttlSeconds, MAX_TTL_SECONDS),
    codeLength: request.codeLength ?? rules.codeLength,
    deliveryTimeoutSeconds: route.deliveryTimeoutSeconds,
    rules,
    // Compared only on a replay, which only an Idempotency-Key's id can have.
    fingerprint: input.idempotencyKey === undefined ? '' : fingerprint(request),
    callbackUrl,
    now,
  };
  // Premium-rate, shared-cost, fixed-line…: refused before any limit is touched.
  if (!receivesCodes(destination)) return await refuse(draft, { kind: 'number_type', rule: 'number_type', silenceable: true }, deps);

  const eventId = `${id}-1`;
  const gate = await deps.gate.admit({
    tenant,
    destination,
    destinationMac: draft.destinationMac,
    ip: request.context?.ip,
    channels: plan,
    channelsWithoutWhatsApp: withoutWhatsApp,
    eventId,
    security: rules.security,
    now,
    idempotency:
      input.idempotencyKey === undefined
        ? undefined
        : { name: ownPart, fingerprint: draft.fingerprint, ttlMs: deps.store.recordLifetimeMs(draft.ttlSeconds * 1000) },
  });
  reportQuarantines(gate.newQuarantines, tenant, rules.security.pumping.mode, deps);
  if (!gate.admitted) {
    if (gate.refusal.kind === 'idempotency_conflict') throw refusalError(gate.refusal);
    return await refuse(draft, gate.refusal, deps);
  }
  draft.plan = gate.channels;
  if (gate.shadowQuarantine !== undefined) {
    deps.metrics.guardRefusals.inc({ tenant, rule: 'pumping_guard', mode: 'shadow' });
    deps.logger.warn({ tenant, ...gate.shadowQuarantine, destination: maskDestination(destination.value) }, 'pumping guard (shadow) would refuse');
  }

  // Queue first, store second. A worker that runs the job before the record exists retries
  // briefly (send.handler.ts), and a crash between the two steps leaves at most a job that finds
  // no record and gives up, never a stored verification without its send job. The verification's
  // timer (its expiry) is armed by the first send that runs, not here: one BullMQ job fewer on the
  // request's path.
  const firstChannel = draft.plan[0] ?? 'sms';
  let created;
  try {
    await deps.queues.enqueueSend(firstChannel, { verificationId: id, delivery: 1, requestId: input.caller.requestId });
    created = await deps.store.create(record(draft, deps, false));
  } catch (error) {
    await deps.gate.cancel(gate, eventId).catch(() => undefined);
    throw new KurirError('service_unavailable', 'Could not store the verification; nothing was created.', { retryAfterSeconds: 1 }, { cause: error });
  }
  if (!created.created) {
    if ('fingerprint' in created) return await replay(draft, created.fingerprint, input.caller, deps);
    // Locked after repeated wrong codes: the send is taken back from the limits and its job
    // dropped (a job left behind would wait RECORD_WAIT_MS for a record that never comes).
    await Promise.all([
      deps.gate.cancel(gate, eventId).catch(() => undefined),
      deps.queues.discardSend(firstChannel, id, 1).catch(() => undefined),
    ]);
    return await refuse(draft, { kind: 'lockout', rule: 'destination_lockout', retryAfterMs: created.lockedForMs, silenceable: true }, deps);
  }

  deps.metrics.verificationsCreated.inc({ tenant, purpose: request.purpose, channel: firstChannel, country: countryLabel(destination.country) });
  await recordCreated(deps, { tenant, country: countryLabel(destination.country), channel: firstChannel });
  deps.logger.info(
    { verificationId: id, tenant, purpose: request.purpose, plan: draft.plan, locale: draft.locale, destination: maskDestination(destination.value), requestId: input.caller.requestId },
    'verification created',
  );
  return accepted(draft);
}

async function replay(draft: Draft, storedFingerprint: string, caller: Caller, deps: VerificationDeps): Promise<Reply> {
  if (storedFingerprint !== draft.fingerprint) {
    throw new KurirError('idempotency_key_reused', 'This Idempotency-Key was used with a different request body.');
  }
  const existing = await deps.store.get(draft.id);
  if (existing === undefined) throw new KurirError('service_unavailable', 'Try again.', { retryAfterSeconds: 1 });
  const status = effectiveStatus(existing, draft.now);
  // Re-queue the first delivery: if the original request died between storing and queueing,
  // the replay completes it (and its send arms the timer); otherwise the deterministic job id
  // makes this a no-op.
  const first = existing.deliveries[0];
  if (first !== undefined && first.status === 'queued' && status === 'pending') {
    await deps.queues.enqueueSend(first.channel, { verificationId: draft.id, delivery: 1, requestId: caller.requestId });
  }
  return {
    status: 202,
    body: createdBody({ ...existing, status, channel: existing.deliveries.at(-1)?.channel ?? existing.plan[0] ?? 'sms' }),
    headers: { 'Idempotent-Replayed': 'true', Location: `/v1/verifications/${draft.id}` },
  };
}

/** The production rules on top of the schema's (which hold in every mode): see callback-url.ts. */
function callbackUrlFor(raw: string, production: boolean): string {
  const checked = checkCallbackUrl(raw, { production });
  if (!checked.ok) {
    throw new KurirError('validation_failed', 'The request body does not match the schema.', {
      errors: [{ path: 'callbackUrl', message: checked.message }],
    });
  }
  return checked.url;
}
