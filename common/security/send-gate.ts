import type { SecurityPolicy } from '../config/security-policy.js';
import { geoAllows } from '../config/security-policy.js';
import type { Channel } from '../domain/channel.js';
import type { Destination } from '../domain/destination.js';
import type { KeySpace } from '../store/keys.js';
import { packArgs } from '../store/packed-args.js';
import type { RedisClient } from '../store/verification.store.js';
import type { DailyBudget } from './budget.js';
import { nextUtcMidnight } from './budget.js';
import { bindKeyedScript, type KeyedScript } from './keyed-script.js';
import type { DestinationLockout } from './lockout.js';
import {
  createdQuarantines,
  distinctSubjects,
  guardSendParts,
  guardSettingsArgs,
  type GuardQuarantine,
  type GuardSubject,
  type PumpingGuard,
} from './pumping-guard.js';
import { hashTag, limitKey, limitScriptParts, type LimitRule, type LimitStatus, type SendLimiter } from './rate-limiter.js';
import { ADMIT } from './send-gate.lua.js';

/**
 * The gate every send request passes before anything is stored or queued: geo permissions, a
 * reused Idempotency-Key, the pumping quarantine, the daily budget and the send limits, in that
 * order (cheapest and most final first; the limits last because they record the send). A refused
 * request leaves no trace in the limits and never reaches a provider. (The destination's lockout
 * is not here: it lives with the destination's verifications and the store refuses a locked
 * create, lockout.ts.)
 *
 * One Redis step: a script on the tenant's slot (send-gate.lua.ts), where the destination's
 * no-WhatsApp hint lives too. A create whose plan the hint changes asks twice.
 */

/** Why a request was refused. `rule` is what a 429/403 names; `silenceable` ones may get a decoy. */
export type Refusal =
  | { kind: 'number_type'; rule: 'number_type'; silenceable: true }
  | { kind: 'geo'; rule: 'geo'; silenceable: true }
  | { kind: 'lockout'; rule: 'destination_lockout'; retryAfterMs: number; silenceable: true }
  | { kind: 'quarantine'; rule: 'pumping_guard'; subject: GuardSubject; reason: string; silenceable: true }
  | { kind: 'budget'; rule: `budget_${Channel}`; retryAfterMs: number; silenceable: false }
  | { kind: 'rate_limit'; rule: string; retryAfterMs: number; silenceable: false }
  /** Not a send refusal: the Idempotency-Key was used with another request (a 422, never a decoy). */
  | { kind: 'idempotency_conflict'; rule: 'idempotency_key'; silenceable: false };

/**
 * A create's Idempotency-Key: `name` is unique per tenant and key (the id's own part), `fingerprint`
 * the request's, and the marker lives as long as the verification's record can (`ttlMs`).
 */
export interface IdempotencyMarker {
  name: string;
  fingerprint: string;
  ttlMs: number;
}

export interface SendRequest {
  tenant: string;
  destination: Destination;
  destinationMac: string;
  /** `context.ip` of the request; never the socket address (that is the client's server). */
  ip: string | undefined;
  /** Channels the send may use, first one first (a create's plan, or a resend's channel). */
  channels: Channel[];
  /** Unique per send (verification id + delivery or resend marker): identifies it in the limits. */
  eventId: string;
  security: SecurityPolicy;
  now: number;
  /**
   * The channels to use instead when Meta told the tenant this number has no WhatsApp (a create's
   * automatic plan, see the worker's send handler); without them the hint is not read (a channel
   * the user picked, a resend).
   */
  channelsWithoutWhatsApp?: Channel[] | undefined;
  /** A create's Idempotency-Key, checked against the request that first used it. */
  idempotency?: IdempotencyMarker | undefined;
}

export type GateDecision =
  | {
      admitted: true;
      channels: Channel[];
      shadowQuarantine: { subject: GuardSubject; reason: string } | undefined;
      rules: LimitRule[];
      /** Quarantines this very send created (shadow ones only, when admitted); report each once. */
      newQuarantines: GuardQuarantine[];
    }
  | { admitted: false; refusal: Refusal; newQuarantines: GuardQuarantine[] };

export interface SendGateDeps {
  /** The connection of the gate's own script (the other parts bring theirs). */
  redis: RedisClient;
  limiter: SendLimiter;
  guard: PumpingGuard;
  budget: DailyBudget;
  /** The destination's lockout, for `status` (the store's scripts enforce it). */
  lockout: DestinationLockout;
  /** The key prefix of the limits and the idempotency markers, and the no-WhatsApp hints' keys. */
  keys: Pick<KeySpace, 'prefix' | 'noWhatsApp' | 'idempotencyMarker'>;
}

/** The number without its last 4 digits: a block of 10,000 numbers, what pumping rents. */
export function numberPrefix(e164: string): string {
  return e164.slice(0, Math.max(2, e164.length - 4));
}

export function guardSubjects(destination: Destination): GuardSubject[] {
  if (destination.kind !== 'phone') return [];
  const subjects: GuardSubject[] = [{ dimension: 'prefix', value: numberPrefix(destination.value) }];
  if (destination.country !== undefined) subjects.push({ dimension: 'country', value: destination.country });
  return subjects;
}

/** The send limits of one request, all under the tenant's hash tag so one script checks them. */
export function limitRules(request: Omit<SendRequest, 'channels' | 'eventId' | 'now'>, keyPrefix: string): LimitRule[] {
  const { tenant, destination, destinationMac, ip, security } = request;
  const limits = security.limits;
  const key = (rule: string, subject: string) => limitKey(keyPrefix, tenant, rule, subject);
  const rules: LimitRule[] = [
    { kind: 'backoff', name: 'destination_cooldown', key: key('dst-backoff', destinationMac), baseMs: limits.destination.cooldownSeconds * 1000, maxMs: Math.max(limits.destination.maxBackoffSeconds, limits.destination.cooldownSeconds) * 1000, windowMs: 86_400_000 },
    { kind: 'window', name: 'destination_10m', key: key('dst-10m', destinationMac), limit: limits.destination.per10Minutes, windowMs: 600_000 },
    { kind: 'window', name: 'destination_24h', key: key('dst-24h', destinationMac), limit: limits.destination.per24Hours, windowMs: 86_400_000 },
    { kind: 'window', name: 'tenant_rate', key: key('tenant', '1s'), limit: limits.tenant.perSecond, windowMs: 1000 },
  ];
  if (limits.destination.cooldownSeconds === 0) rules.shift();
  if (ip !== undefined) {
    rules.push({ kind: 'distinct', name: 'ip_destinations', key: key('ip', ip), member: destinationMac, limit: limits.ip.distinctDestinationsPer10Minutes, windowMs: 600_000 });
  }
  if (destination.kind === 'phone') {
    rules.push({ kind: 'window', name: 'prefix_rate', key: key('prefix', numberPrefix(destination.value)), limit: limits.prefix.perHour, windowMs: 3_600_000 });
    if (destination.country !== undefined) {
      rules.push({ kind: 'window', name: 'country_rate', key: key('country', destination.country), limit: limits.country.perSecond, windowMs: 1000 });
    }
  }
  return rules;
}

function refused(refusal: Refusal): GateDecision {
  return { admitted: false, refusal, newQuarantines: [] };
}

type Reply = (string | number | null)[];

/** One script, one slot: a key outside the tenant's tag would be a CROSSSLOT error on a Cluster only. */
function requireOneSlot(keys: readonly string[]): void {
  const tag = hashTag(keys[0] ?? '');
  for (const key of keys) {
    if (tag === undefined || hashTag(key) !== tag) throw new Error(`send gate: key "${key}" is not in hash tag {${tag ?? ''}}`);
  }
}

/** The admit script's reply (send-gate.lua.ts) as a decision. */
function decision(
  reply: Reply,
  call: { channels: Channel[]; rules: LimitRule[]; subjects: GuardSubject[]; now: number },
): GateDecision {
  const kind = String(reply[0]);
  switch (kind) {
    case 'idempotency_conflict':
      return refused({ kind: 'idempotency_conflict', rule: 'idempotency_key', silenceable: false });
    case 'quarantine': {
      const subject = call.subjects[Number(reply[1]) - 1];
      if (subject === undefined) throw new Error('send gate: quarantine reply names no subject');
      return refused({ kind: 'quarantine', rule: 'pumping_guard', subject, reason: String(reply[3] ?? ''), silenceable: true });
    }
    case 'budget': {
      const first = call.channels[0] as Channel;
      return refused({ kind: 'budget', rule: `budget_${first}`, retryAfterMs: nextUtcMidnight(call.now) - call.now, silenceable: false });
    }
    case 'limit': {
      const rule = call.rules[Number(reply[1]) - 1];
      if (rule === undefined) throw new Error('send gate: limit reply names no rule');
      return refused({ kind: 'rate_limit', rule: rule.name, retryAfterMs: Number(reply[2]), silenceable: false });
    }
    case 'admit':
    case 'tripped': {
      const newQuarantines = createdQuarantines(reply, 3, call.subjects);
      const enforced = newQuarantines.find((quarantine) => !quarantine.shadow);
      if (kind === 'tripped' && enforced !== undefined) {
        return {
          admitted: false,
          refusal: { kind: 'quarantine', rule: 'pumping_guard', subject: enforced.subject, reason: enforced.reason, silenceable: true },
          newQuarantines,
        };
      }
      const shadowSubject = call.subjects[Number(reply[1]) - 1];
      const shadowQuarantine = shadowSubject === undefined ? undefined : { subject: shadowSubject, reason: String(reply[2] ?? '') };
      return { admitted: true, channels: call.channels, shadowQuarantine, rules: call.rules, newQuarantines };
    }
    default:
      throw new Error(`send gate: unexpected reply "${kind}"`);
  }
}

/** Placeholders for the guard's settings when it is off (the script then judges no subject). */
const NO_GUARD_SETTINGS = [0, 0, 0, 0, 0, 0, 0, 0];

export class SendGate {
  private readonly admitScript: KeyedScript<Reply>;

  constructor(private readonly deps: SendGateDeps) {
    this.admitScript = bindKeyedScript(deps.redis, 'kurirSendGate', ADMIT);
  }

  async admit(request: SendRequest): Promise<GateDecision> {
    const { tenant, destination, security, now } = request;

    const channels = request.channels.filter(
      (channel) => channel === 'email' || geoAllows(security, channel, destination.country),
    );
    if (channels.length === 0) return refused({ kind: 'geo', rule: 'geo', silenceable: true });
    const hintCheck = request.channelsWithoutWhatsApp !== undefined && channels.includes('whatsapp');

    const first = channels[0] as Channel;
    const budget = security.budgets[first];
    const budgetLimit = budget.failClosed && budget.dailyMessages !== null ? budget.dailyMessages : -1;
    const subjects = security.pumping.mode === 'off' ? [] : distinctSubjects(guardSubjects(destination));
    const rules = limitRules(request, this.deps.keys.prefix);
    const limits = limitScriptParts(rules);
    const guard = guardSendParts(this.deps.guard.keys, tenant, subjects);
    const idempotency = request.idempotency;
    const keys = [
      ...(idempotency !== undefined ? [this.deps.keys.idempotencyMarker(tenant, idempotency.name)] : []),
      ...(hintCheck ? [this.deps.keys.noWhatsApp(tenant, request.destinationMac)] : []),
      ...(subjects.length > 0 ? [guard.index, ...guard.subjectKeys] : []),
      ...(budgetLimit >= 0 ? [this.deps.budget.keyFor(tenant, first, now)] : []),
      ...limits.keys,
    ];
    requireOneSlot(keys);
    const reply = await this.admitScript(keys, [
      packArgs([
        now,
        request.eventId,
        subjects.length,
        budgetLimit,
        hintCheck ? 1 : 0,
        idempotency?.fingerprint ?? '',
        idempotency?.ttlMs ?? 0,
        ...(subjects.length > 0 ? guardSettingsArgs(security.pumping) : NO_GUARD_SETTINGS),
        ...guard.members,
        ...limits.args,
      ]),
    ]);
    if (reply[0] === 'no_whatsapp') {
      // Rare (a number Meta refused before), so a second step: the plan without WhatsApp.
      return this.admit({ ...request, channels: request.channelsWithoutWhatsApp ?? [], channelsWithoutWhatsApp: undefined });
    }
    return decision(reply, { channels, rules, subjects, now });
  }

  /** The send could not be queued after all: give its place in the limits back. */
  async cancel(decision: GateDecision & { admitted: true }, eventId: string): Promise<void> {
    await this.deps.limiter.release(decision.rules, eventId);
  }

  /** An approval's conversion for the pumping guard. */
  async recordApproval(tenant: string, destination: Destination, security: SecurityPolicy, sentAt: number, now: number): Promise<void> {
    await this.deps.guard.recordApproval(tenant, guardSubjects(destination), security.pumping, sentAt, now);
  }

  /** What is left of every limit for a destination (and IP), for `GET /v1/limits`. */
  async status(request: Omit<SendRequest, 'channels' | 'eventId'>): Promise<{
    limits: LimitStatus[];
    lockout: { locked: boolean; retryAfterMs: number };
    quarantined: boolean;
    budgets: { channel: Channel; dailyMessages: number | null; used: number; resetAt: number }[];
  }> {
    const { tenant, destination, security, now } = request;
    const channels: Channel[] = destination.kind === 'email' ? ['email'] : ['whatsapp', 'sms'];
    // Independent reads, issued together.
    const [limits, lockout, verdict, budgets] = await Promise.all([
      this.deps.limiter.peek(limitRules(request, this.deps.keys.prefix), now),
      this.deps.lockout.state(tenant, request.destinationMac),
      this.deps.guard.check(tenant, guardSubjects(destination), security.pumping, now),
      Promise.all(
        channels.map(async (channel) => ({
          channel,
          dailyMessages: security.budgets[channel].dailyMessages,
          used: await this.deps.budget.used(tenant, channel, now),
          resetAt: nextUtcMidnight(now),
        })),
      ),
    ]);
    return { limits, lockout, quarantined: verdict.kind === 'quarantined' && !verdict.shadow, budgets };
  }
}
