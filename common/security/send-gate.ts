import type { SecurityPolicy } from '../config/security-policy.js';
import { geoAllows } from '../config/security-policy.js';
import type { Channel } from '../domain/channel.js';
import type { Destination } from '../domain/destination.js';
import type { DailyBudget } from './budget.js';
import { nextUtcMidnight } from './budget.js';
import type { DestinationLockout } from './lockout.js';
import type { GuardQuarantine, GuardSubject, PumpingGuard } from './pumping-guard.js';
import { limitKey, type LimitRule, type LimitStatus, type SendLimiter } from './rate-limiter.js';

/**
 * The gate every send request passes before anything is stored or queued: geo permissions,
 * destination lockout, the pumping quarantine, the daily budget and the send limits, in that
 * order (cheapest and most final first; the limits last because they record the send). A refused
 * request leaves no trace in the limits and never reaches a provider.
 */

/** Why a request was refused. `rule` is what a 429/403 names; `silenceable` ones may get a decoy. */
export type Refusal =
  | { kind: 'number_type'; rule: 'number_type'; silenceable: true }
  | { kind: 'geo'; rule: 'geo'; silenceable: true }
  | { kind: 'lockout'; rule: 'destination_lockout'; retryAfterMs: number; silenceable: true }
  | { kind: 'quarantine'; rule: 'pumping_guard'; subject: GuardSubject; reason: string; silenceable: true }
  | { kind: 'budget'; rule: `budget_${Channel}`; retryAfterMs: number; silenceable: false }
  | { kind: 'rate_limit'; rule: string; retryAfterMs: number; silenceable: false };

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
  limiter: SendLimiter;
  guard: PumpingGuard;
  budget: DailyBudget;
  lockout: DestinationLockout;
  keyPrefix: string;
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

export class SendGate {
  constructor(private readonly deps: SendGateDeps) {}

  async admit(request: SendRequest): Promise<GateDecision> {
    const { tenant, destination, security, now } = request;

    const channels = request.channels.filter(
      (channel) => channel === 'email' || geoAllows(security, channel, destination.country),
    );
    if (channels.length === 0) return refused({ kind: 'geo', rule: 'geo', silenceable: true });

    const lock = await this.deps.lockout.state(request.destinationMac);
    if (lock.locked) {
      return refused({ kind: 'lockout', rule: 'destination_lockout', retryAfterMs: lock.retryAfterMs, silenceable: true });
    }

    let shadowQuarantine: { subject: GuardSubject; reason: string } | undefined;
    const subjects = guardSubjects(destination);
    if (subjects.length > 0) {
      const verdict = await this.deps.guard.check(tenant, subjects, security.pumping, now);
      if (verdict.kind === 'quarantined') {
        if (!verdict.shadow) {
          return refused({ kind: 'quarantine', rule: 'pumping_guard', subject: verdict.subject, reason: verdict.reason, silenceable: true });
        }
        shadowQuarantine = { subject: verdict.subject, reason: verdict.reason };
      }
    }

    const first = channels[0] as Channel;
    const budget = security.budgets[first];
    if (budget.failClosed && budget.dailyMessages !== null) {
      const used = await this.deps.budget.used(tenant, first, now);
      if (used >= budget.dailyMessages) {
        return refused({ kind: 'budget', rule: `budget_${first}`, retryAfterMs: nextUtcMidnight(now) - now, silenceable: false });
      }
    }

    const rules = limitRules(request, this.deps.keyPrefix);
    const decision = await this.deps.limiter.consume(rules, now, request.eventId);
    if (!decision.allowed) {
      return refused({ kind: 'rate_limit', rule: decision.rule, retryAfterMs: decision.retryAfterMs, silenceable: false });
    }

    // Count the send for the guard before it is queued, so that the send which trips the
    // quarantine is itself refused instead of being the last one a pumper gets through.
    const created = subjects.length === 0 ? [] : await this.deps.guard.recordSend(tenant, subjects, security.pumping, now);
    const newQuarantines = created.filter((verdict): verdict is Extract<typeof verdict, { kind: 'quarantined' }> => verdict.kind === 'quarantined');
    const enforced = newQuarantines.find((quarantine) => !quarantine.shadow);
    if (enforced !== undefined) {
      await this.deps.limiter.release(rules, request.eventId);
      return {
        admitted: false,
        refusal: { kind: 'quarantine', rule: 'pumping_guard', subject: enforced.subject, reason: enforced.reason, silenceable: true },
        newQuarantines,
      };
    }
    return { admitted: true, channels, shadowQuarantine, rules, newQuarantines };
  }

  /** The send could not be queued after all: give its place in the limits back. */
  async cancel(decision: GateDecision & { admitted: true }, eventId: string): Promise<void> {
    await this.deps.limiter.release(decision.rules, eventId);
  }

  async recordApproval(tenant: string, destination: Destination, security: SecurityPolicy, sentAt: number, now: number): Promise<void> {
    const subjects = guardSubjects(destination);
    if (subjects.length > 0) await this.deps.guard.recordApproval(tenant, subjects, security.pumping, sentAt, now);
  }

  /** What is left of every limit for a destination (and IP), for `GET /v1/limits`. */
  async status(request: Omit<SendRequest, 'channels' | 'eventId'>): Promise<{
    limits: LimitStatus[];
    lockout: { locked: boolean; retryAfterMs: number };
    quarantined: boolean;
    budgets: { channel: Channel; dailyMessages: number | null; used: number; resetAt: number }[];
  }> {
    const { tenant, destination, security, now } = request;
    const limits = await this.deps.limiter.peek(limitRules(request, this.deps.keyPrefix), now);
    const lockout = await this.deps.lockout.state(request.destinationMac);
    const subjects = guardSubjects(destination);
    const verdict = subjects.length === 0 ? { kind: 'allow' as const } : await this.deps.guard.check(tenant, subjects, security.pumping, now);
    const channels: Channel[] = destination.kind === 'email' ? ['email'] : ['whatsapp', 'sms'];
    const budgets = await Promise.all(
      channels.map(async (channel) => ({
        channel,
        dailyMessages: security.budgets[channel].dailyMessages,
        used: await this.deps.budget.used(tenant, channel, now),
        resetAt: nextUtcMidnight(now),
      })),
    );
    return { limits, lockout, quarantined: verdict.kind === 'quarantined' && !verdict.shadow, budgets };
  }
}
