/**
 * The send limiter: Kurir refuses a send (create or resend of an OTP) when any limit is
 * exceeded, before any provider is called.
 *
 * Glossary
 * - **rule** — one limit on one subject (a destination, a client IP, a tenant, a country), kept
 *   under its own Redis key.
 * - **event** — one send, named by a caller-chosen `eventId` (e.g. `<verificationId>-<n>`); it is
 *   what `release` takes back and what makes a retried `consume` count once.
 * - **window** — the sliding time span a rule looks back over: an event at t counts during
 *   [t, t + windowMs) and no longer.
 *
 * Every rule of one send is checked and recorded by one Lua script (rate-limiter.lua.ts), all or
 * nothing. Keys are built by the caller as `<prefix>:lim:{<tenant>}:<rule>:<subject>` (see
 * {@link limitKey}); the shared hash tag puts every key of one call in one Cluster slot.
 * Subjects and distinct members end up in Redis: pass a MAC of a phone number or email, never the
 * plaintext.
 */
import type { Cluster, Redis } from 'ioredis';
import { bindKeyedScript, type KeyedScript } from './keyed-script.js';
import * as lua from './rate-limiter.lua.js';
import { tenantHashTag } from './tenant-slot.js';

/**
 * One limit of a send.
 * - `window`: at most `limit` events in any sliding window of `windowMs` (an exact log of event
 *   times, not a fixed-bucket approximation).
 * - `distinct`: at most `limit` distinct `member`s in the window; a member already seen in the
 *   window is always allowed (the same destination again from one IP).
 * - `backoff`: the k-th event in the window must come at least min(baseMs·2^(k−2), maxMs) after
 *   the previous one (k ≥ 2): 30 s, 60 s, 120 s … a growing cooldown that starts over once the
 *   window is empty.
 *
 * `name` is what a refusal reports; `key` is the Redis key (it must carry the call's hash tag).
 */
export type LimitRule =
  | { kind: 'window'; name: string; key: string; limit: number; windowMs: number }
  | { kind: 'distinct'; name: string; key: string; member: string; limit: number; windowMs: number }
  | { kind: 'backoff'; name: string; key: string; baseMs: number; maxMs: number; windowMs: number };

/**
 * The outcome of {@link SendLimiter.consume}. A refusal names the rule whose wait is longest
 * (the client has to wait that long anyway) and how long that is; a limit of 0 reports its
 * whole window.
 */
export type LimitDecision = { allowed: true } | { allowed: false; rule: string; retryAfterMs: number };

/** What is left of one rule at one moment (for `GET /v1/limits`). */
export interface LimitStatus {
  rule: string;
  /** The rule's limit; null for `backoff`, which limits spacing rather than count. */
  limit: number | null;
  /** Events (`window`, `backoff`) or distinct members (`distinct`) in the window now. */
  used: number;
  /** limit − used, never below 0; null for `backoff`. */
  remaining: number | null;
  /**
   * Epoch ms of the next change worth telling a client: when refused, the moment one more event
   * becomes allowed (now + retryAfterMs); otherwise when the oldest entry leaves (`window`,
   * `distinct`: one more slot) or when the window empties (`backoff`: the cooldown starts over).
   * Null when nothing is recorded.
   */
  resetAt: number | null;
  /** 0 when one more event would be allowed now (for `distinct`: of this rule's `member`). */
  retryAfterMs: number;
}

type Reply = (string | number | null)[];

/**
 * The limiter's scripts. The number of keys varies with the rules (keyed-script.ts); ioredis runs
 * them by SHA and falls back to EVAL after a Redis restart (NOSCRIPT). peek is deliberately not
 * marked readOnly, so it is never routed to a replica that has not seen the last consume yet.
 */
interface LimiterScripts {
  consume: KeyedScript<Reply>;
  peek: KeyedScript<Reply>;
  release: KeyedScript<number>;
}

function bindScripts(redis: Redis | Cluster): LimiterScripts {
  return {
    consume: bindKeyedScript(redis, 'kurirLimitConsume', lua.CONSUME),
    peek: bindKeyedScript(redis, 'kurirLimitPeek', lua.PEEK),
    release: bindKeyedScript(redis, 'kurirLimitRelease', lua.RELEASE),
  };
}

/** Suffix of the hash that remembers, per distinct member, what the last event changed. */
const UNDO_SUFFIX = ':undo';

/**
 * The key of one rule: `<prefix>:lim:{<tenant>}:<rule>:<subject>`. Every limit of one tenant
 * shares the tenant's hash tag, so one send's rules live in one Cluster slot.
 */
export function limitKey(prefix: string, tenant: string, rule: string, subject: string): string {
  return `${prefix}:lim:${tenantHashTag(tenant)}:${rule}:${subject}`;
}

/** Redis Cluster's hash tag: the text between the first `{` and the next `}`, if not empty. */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

function requireInteger(value: number, min: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < min) throw new Error(`limiter: ${what} must be an integer ≥ ${min}, got ${value}`);
}

/** Throws for rule sets a caller should never build; returns the keys in script order. */
function validate(rules: readonly LimitRule[], needMembers: boolean): string[] {
  const keys: string[] = [];
  const names = new Set<string>();
  let tag: string | undefined;
  for (const rule of rules) {
    const where = `rule "${rule.name}"`;
    if (typeof rule.name !== 'string' || rule.name === '') throw new Error('limiter: every rule needs a name');
    if (names.has(rule.name)) throw new Error(`limiter: duplicate ${where}`);
    names.add(rule.name);
    const ruleTag = hashTag(rule.key);
    if (ruleTag === undefined) throw new Error(`limiter: ${where} key "${rule.key}" has no hash tag`);
    if (tag !== undefined && ruleTag !== tag) throw new Error(`limiter: ${where} key "${rule.key}" is not in hash tag {${tag}}`);
    tag = ruleTag;
    requireInteger(rule.windowMs, 1, `${where} windowMs`);
    switch (rule.kind) {
      case 'window':
        requireInteger(rule.limit, 0, `${where} limit`);
        keys.push(rule.key);
        break;
      case 'distinct':
        requireInteger(rule.limit, 0, `${where} limit`);
        if (typeof rule.member !== 'string' || (needMembers && rule.member === '')) {
          throw new Error(`limiter: ${where} needs a member`);
        }
        keys.push(rule.key, rule.key + UNDO_SUFFIX);
        break;
      case 'backoff':
        requireInteger(rule.baseMs, 1, `${where} baseMs`);
        requireInteger(rule.maxMs, rule.baseMs, `${where} maxMs`);
        keys.push(rule.key);
        break;
      default:
        throw new Error(`limiter: ${where} has unknown kind "${(rule as { kind: unknown }).kind}"`);
    }
  }
  const unique = new Set(keys);
  if (unique.size !== keys.length) throw new Error('limiter: two rules of one call share a key');
  return keys;
}

function ruleArgs(rule: LimitRule): (string | number)[] {
  switch (rule.kind) {
    case 'window':
      return [rule.kind, rule.limit, rule.windowMs, 0, ''];
    case 'distinct':
      return [rule.kind, rule.limit, rule.windowMs, 0, rule.member];
    case 'backoff':
      return [rule.kind, rule.baseMs, rule.windowMs, rule.maxMs, ''];
  }
}

/**
 * The keys and the per-rule arguments of a rule set, in the scripts' order (see rate-limiter.lua.ts),
 * after validating it; for scripts that embed the limiter's prelude (the send gate's).
 */
export function limitScriptParts(rules: readonly LimitRule[]): { keys: string[]; args: (string | number)[] } {
  return { keys: validate(rules, true), args: rules.flatMap(ruleArgs) };
}

function requireEventId(eventId: string): void {
  if (typeof eventId !== 'string' || eventId === '') throw new Error('limiter: eventId must be a non-empty string');
}

/**
 * Checks and records sends against a set of rules in Redis. Holds no state between calls, so any
 * number of processes may share one Redis (or Cluster).
 */
export class SendLimiter {
  private readonly scripts: LimiterScripts;

  constructor(redis: Redis | Cluster) {
    this.scripts = bindScripts(redis);
  }

  /**
   * Checks every rule at `now` and records the event in all of them only if all allow. A call
   * repeated with an `eventId` already recorded in every `window`/`backoff` rule is allowed
   * without counting it again.
   */
  async consume(rules: readonly LimitRule[], now: number, eventId: string): Promise<LimitDecision> {
    requireInteger(now, 0, 'now');
    requireEventId(eventId);
    const { keys, args } = limitScriptParts(rules);
    if (rules.length === 0) return { allowed: true };
    const reply = await this.scripts.consume(keys, [now, eventId, ...args]);
    if (!Array.isArray(reply)) throw new Error('limiter: unexpected consume reply');
    if (Number(reply[0]) === 1) return { allowed: true };
    const refused = rules[Number(reply[1]) - 1];
    if (refused === undefined) throw new Error('limiter: consume reply names no rule');
    return { allowed: false, rule: refused.name, retryAfterMs: Number(reply[2]) };
  }

  /**
   * What is left of each rule at `now`, in rule order, recording nothing. For a `distinct` rule
   * `retryAfterMs` is about its `member` (an empty member asks about a new one).
   */
  async peek(rules: readonly LimitRule[], now: number): Promise<LimitStatus[]> {
    requireInteger(now, 0, 'now');
    const keys = validate(rules, false);
    if (rules.length === 0) return [];
    const reply = await this.scripts.peek(keys, [now, '', ...rules.flatMap(ruleArgs)]);
    if (!Array.isArray(reply) || reply.length !== rules.length * 3) throw new Error('limiter: unexpected peek reply');
    return rules.map((rule, i) => {
      const used = Number(reply[i * 3]);
      const resetAt = Number(reply[i * 3 + 2]);
      const limit = rule.kind === 'backoff' ? null : rule.limit;
      return {
        rule: rule.name,
        limit,
        used,
        remaining: limit === null ? null : Math.max(0, limit - used),
        resetAt: resetAt < 0 ? null : resetAt,
        retryAfterMs: Number(reply[i * 3 + 1]),
      };
    });
  }

  /**
   * Takes back one recorded event (when the send it guarded could not be queued after all).
   * Releasing an event that is not recorded, or twice, changes nothing.
   */
  async release(rules: readonly LimitRule[], eventId: string): Promise<void> {
    requireEventId(eventId);
    const { keys, args } = limitScriptParts(rules);
    if (rules.length === 0) return;
    await this.scripts.release(keys, [0, eventId, ...args]);
  }
}
