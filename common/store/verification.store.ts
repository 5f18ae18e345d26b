import type { Cluster, Redis } from 'ioredis';
import { isChannel, isLocale, type Channel, type Locale } from '../domain/channel.js';
import {
  DELIVERY_REASONS,
  DELIVERY_STATUSES,
  VERIFICATION_STATUSES,
  type Delivery,
  type DeliveryReason,
  type DeliveryStatus,
  type FallbackReason,
  type Verification,
  type VerificationStatus,
} from '../domain/verification.js';
import { randomHex } from '../security/random-pool.js';
import { lockKeyNames, type KeySpace } from './keys.js';
import { packArgs } from './packed-args.js';
import type { SecurityPolicy } from '../config/security-policy.js';
import { lockoutSettingsArgs } from '../security/lockout.js';
import { bindScript } from './scripts.js';
import * as lua from './verification.lua.js';

/** A Redis connection as the store needs it: a single node, Sentinel-managed, or a Cluster. */
export type RedisClient = Redis | Cluster;

/** What a new verification is created with; the code itself never reaches the store. */
export interface NewVerification {
  id: string;
  tenant: string;
  to: string;
  kind: 'phone' | 'email';
  country: string | undefined;
  purpose: string;
  locale: Locale;
  plan: Channel[];
  firstChannel: Channel;
  firstReason: DeliveryReason;
  maxAttempts: number;
  codeLength: number;
  deliveryTimeoutSeconds: number;
  codeMac: string;
  codeSealed: string;
  createdAt: number;
  expiresAt: number;
  /** Digest of the create request, kept to tell an idempotent replay from a reused key. */
  fingerprint: string;
  /** MAC of the destination: the key of per-destination counters, never the number itself. */
  destinationMac: string;
  /**
   * A silently refused create: stored so it answers like any other verification, but never
   * sent and never approved (its code went nowhere).
   */
  decoy?: boolean;
  /** Where the tenant wants this verification's events posted (validated by the API). */
  callbackUrl?: string | undefined;
}

/** A verification as stored: the domain object plus the tenant's callback URL, when one was given. */
export type StoredVerification = Verification & { callbackUrl?: string };

export type ExpireResult =
  | { kind: 'expired'; tenant: string; ending: VerificationEnding }
  | { kind: 'not_pending'; status: string }
  | { kind: 'not_due'; msLeft: number }
  | { kind: 'missing' };

export type CreateResult =
  | { created: true }
  | { created: false; fingerprint: string }
  /** The destination is locked after repeated wrong codes: nothing was stored. */
  | { created: false; lockedForMs: number };

export type CheckStatus = VerificationStatus | 'not_found' | 'consumed' | 'locked';
export interface CheckResult {
  status: CheckStatus;
  attemptsRemaining: number;
  /** True when this very check ended the verification (approved, max_attempts, expired). */
  ended: boolean;
  /**
   * How long the destination stays locked: when `locked` (nothing was counted), or when this
   * wrong code locked it; otherwise 0.
   */
  lockMs: number;
  /** Only when `ended`: what reporting the ending needs, read in the check's own step. */
  ending?: VerificationEnding;
}

/** The parts of an ended verification its metrics, stats, pumping guard and callbacks need (CHECK and EXPIRE return them). */
export interface VerificationEnding {
  purpose: string;
  country: string | undefined;
  to: string;
  kind: 'phone' | 'email';
  createdAt: number;
  /** The channel of the latest delivery. */
  channel: Channel;
  /** Whether the verification has a callback URL (its events then need the whole record). */
  hasCallback: boolean;
}

export interface SendContext {
  to: string;
  /** ISO country of a phone destination as stored at create; undefined for email. */
  country: string | undefined;
  channel: Channel;
  locale: Locale;
  purpose: string;
  tenant: string;
  codeSealed: string;
  expiresAt: number;
  plan: Channel[];
  deliveryTimeoutSeconds: number;
}
/**
 * Why an earlier call for this delivery may have reached the provider: its worker died before
 * recording the answer, or the call ended without a usable answer (timeout, lost connection).
 */
export type SendDoubt = { cause: 'worker_lost' | 'provider_timeout'; callStartedAt: number | undefined };

export type BeginSendResult =
  | { kind: 'go'; context: SendContext; doubt: SendDoubt | undefined }
  /** `pendingUntil`: still pending, but too close to its expiry (then) to send a code. */
  | { kind: 'stale'; status: string; pendingUntil?: number }
  | { kind: 'done'; status: string }
  | { kind: 'missing' };

export type FallbackResult =
  | { kind: 'fallback'; delivery: number; channel: Channel }
  | { kind: 'already'; delivery: number; channel: Channel }
  | { kind: 'exhausted' }
  | { kind: 'ended'; status: string }
  | { kind: 'delivered' }
  | { kind: 'missing' };

export interface ReceiptResult {
  changed: boolean;
  status: DeliveryStatus | 'missing';
  /** A delivered/read receipt for a delivery that had already fallen back: a double send. */
  deliveredAfterFallback: boolean;
  /**
   * This call was the first to find the delivery delivered or read: its latency, cost and stats
   * are this caller's to count, with these facts (read in the same step).
   */
  firstDelivered: DeliveredFacts | undefined;
  fallback: FallbackResult | undefined;
}

/** What counting a delivery's first delivered state needs (the RECEIPT script's `delivered_facts`). */
export interface DeliveredFacts {
  tenant: string;
  country: string | undefined;
  channel: Channel;
  /** Send → delivered receipt; undefined when the provider never reported the message sent. */
  latencySeconds: number | undefined;
  hasCallback: boolean;
  expiresAt: number;
  /**
   * The verification's timer, moved to this delivery's deadline, may go back to the expiry: it is
   * still pending and no delivery waits for a delivery timeout any more (deadlines.ts).
   */
  timerIdle: boolean;
}

function parseDeliveredFacts(raw: unknown): DeliveredFacts | undefined {
  if (!Array.isArray(raw) || raw.length < 8) return undefined;
  const [tenant, country, channel, sentAt, deliveredAt, callback, expiresAt, idle] = (raw as (string | number | null)[]).map(str);
  if (!isChannel(channel)) throw new Error('store: corrupt delivery record');
  const sent = optionalNumber(sentAt);
  const delivered = optionalNumber(deliveredAt);
  return {
    tenant: tenant ?? '',
    country: country === '' ? undefined : country,
    channel,
    latencySeconds: sent === undefined || delivered === undefined ? undefined : Math.max(0, (delivered - sent) / 1000),
    hasCallback: callback === '1',
    expiresAt: Number(expiresAt),
    timerIdle: idle === '1',
  };
}

export type ResendResult =
  | { kind: 'ok'; delivery: number; channel: Channel; decoy: boolean }
  | { kind: 'not_found' }
  | { kind: 'not_pending'; status: string }
  | { kind: 'cooldown'; retryAfterMs: number }
  | { kind: 'locked'; retryAfterMs: number }
  | { kind: 'max_sends' }
  | { kind: 'channel_not_allowed' };

export type CancelResult = { kind: 'canceled' } | { kind: 'not_found' } | { kind: 'not_pending'; status: string };

type Reply = (string | number | null)[];

const SCRIPTS = {
  kurirCreate: lua.CREATE,
  kurirCheck: lua.CHECK,
  kurirBeginSend: lua.BEGIN_SEND,
  kurirMarkSent: lua.MARK_SENT,
  kurirMarkRetry: lua.MARK_RETRY,
  kurirFallback: lua.FALLBACK,
  kurirReceipt: lua.RECEIPT,
  kurirResend: lua.RESEND,
  kurirCancel: lua.CANCEL,
  kurirExpire: lua.EXPIRE,
  kurirClaimEvent: lua.CLAIM_EVENT,
} as const;
type ScriptName = keyof typeof SCRIPTS;
type ScriptRunner = (key: string, ...args: (string | number)[]) => Promise<Reply>;

/** Every verification script takes the one verification key. */
function defineScripts(redis: RedisClient): Record<ScriptName, ScriptRunner> {
  const runners = {} as Record<ScriptName, ScriptRunner>;
  for (const [name, source] of Object.entries(SCRIPTS) as [ScriptName, string][]) {
    const bound = bindScript<Reply>(redis, name, 1, source);
    runners[name] = (key, ...args) => bound([key], args);
  }
  return runners;
}

function str(value: string | number | null | undefined): string {
  return value === null || value === undefined ? '' : String(value);
}

function num(value: string | number | null | undefined): number {
  return Number(value ?? 0);
}

/** The scripts' `ending()` (verification.lua.ts): 7 items from `offset`. */
function parseEnding(reply: Reply, offset: number): VerificationEnding {
  const country = str(reply[offset + 1]);
  const channel = str(reply[offset + 5]);
  return {
    purpose: str(reply[offset]),
    country: country === '' ? undefined : country,
    to: str(reply[offset + 2]),
    kind: str(reply[offset + 3]) === 'email' ? 'email' : 'phone',
    createdAt: num(reply[offset + 4]),
    channel: isChannel(channel) ? channel : 'sms',
    hasCallback: num(reply[offset + 6]) === 1,
  };
}

function parseFallback(reply: Reply, offset = 0): FallbackResult {
  const kind = str(reply[offset]);
  switch (kind) {
    case 'fallback':
    case 'already': {
      const channel = str(reply[offset + 2]);
      if (!isChannel(channel)) throw new Error(`store: unknown channel "${channel}" in fallback`);
      return { kind, delivery: num(reply[offset + 1]), channel };
    }
    case 'ended':
      return { kind, status: str(reply[offset + 1]) };
    case 'exhausted':
    case 'delivered':
    case 'missing':
      return { kind };
    default:
      throw new Error(`store: unexpected fallback reply "${kind}"`);
  }
}

function optionalNumber(value: string | undefined): number | undefined {
  return value === undefined || value === '' ? undefined : Number(value);
}

function oneOf<T extends string>(allowed: readonly T[], value: string | undefined, fallback: T): T {
  return value !== undefined && (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

/** Rebuilds the domain object from the hash fields (see verification.lua.ts for the layout). */
export function decodeVerification(fields: Record<string, string>): StoredVerification | undefined {
  if (fields.id === undefined) return undefined;
  const locale = fields.locale;
  const deliveries: Delivery[] = [];
  const sends = Number(fields.sends ?? 0);
  for (let n = 1; n <= sends; n += 1) {
    const channel = fields[`d${n}:ch`];
    if (!isChannel(channel)) continue;
    const fellBackTo = optionalNumber(fields[`d${n}:fb`]);
    deliveries.push({
      n,
      channel,
      reason: oneOf(DELIVERY_REASONS, fields[`d${n}:why`], 'initial'),
      status: oneOf(DELIVERY_STATUSES, fields[`d${n}:st`], 'queued'),
      provider: fields[`d${n}:pv`],
      providerMessageId: fields[`d${n}:pid`],
      errorCode: fields[`d${n}:err`],
      queuedAt: Number(fields[`d${n}:q`] ?? 0),
      sentAt: optionalNumber(fields[`d${n}:sent`]),
      deliveredAt: optionalNumber(fields[`d${n}:dlv`]),
      failedAt: optionalNumber(fields[`d${n}:fail`]),
      fellBackTo: fellBackTo === 0 ? undefined : fellBackTo,
      deliveredAfterFallback: fields[`d${n}:late`] === '1',
    });
  }
  return {
    id: fields.id,
    tenant: fields.tenant ?? '',
    to: fields.to ?? '',
    kind: fields.kind === 'email' ? 'email' : 'phone',
    country: fields.country === '' ? undefined : fields.country,
    purpose: fields.purpose ?? '',
    locale: isLocale(locale) ? locale : 'en',
    plan: (fields.plan ?? '').split(',').filter(isChannel),
    status: oneOf(VERIFICATION_STATUSES, fields.status, 'pending'),
    attempts: Number(fields.attempts ?? 0),
    maxAttempts: Number(fields.maxAttempts ?? 0),
    codeLength: Number(fields.codeLength ?? 0),
    deliveryTimeoutSeconds: Number(fields.timeout ?? 0),
    createdAt: Number(fields.createdAt ?? 0),
    expiresAt: Number(fields.expiresAt ?? 0),
    approvedAt: optionalNumber(fields.approvedAt),
    endedAt: optionalNumber(fields.endedAt),
    lastSendAt: Number(fields.lastSendAt ?? 0),
    deliveries,
    ...(fields.cb === undefined || fields.cb === '' ? {} : { callbackUrl: fields.cb }),
  };
}

/**
 * Typed access to verification state in Redis. Every mutating method is one Lua script on one
 * slot (keys.ts); nothing here keeps state between calls, so any number of processes may share a
 * Redis.
 */
export class VerificationStore {
  private readonly scripts: Record<ScriptName, ScriptRunner>;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly retentionMs: number,
  ) {
    this.scripts = defineScripts(redis);
  }

  /** How long a record whose verification lives `ttlMs` is kept: its life, then the retention. */
  recordLifetimeMs(ttlMs: number): number {
    return ttlMs + this.retentionMs;
  }

  /** `lockout: false` stores without looking at the destination's lockout (a decoy, which is never sent). */
  async create(record: NewVerification, options: { lockout: boolean } = { lockout: true }): Promise<CreateResult> {
    const fields: (string | number)[] = [
      'id', record.id,
      'tenant', record.tenant,
      'to', record.to,
      'kind', record.kind,
      'country', record.country ?? '',
      'purpose', record.purpose,
      'locale', record.locale,
      'plan', record.plan.join(','),
      'status', 'pending',
      'attempts', 0,
      'maxAttempts', record.maxAttempts,
      'codeLength', record.codeLength,
      'timeout', record.deliveryTimeoutSeconds,
      'codeMac', record.codeMac,
      'codeSealed', record.codeSealed,
      'createdAt', record.createdAt,
      'expiresAt', record.expiresAt,
      'lastSendAt', record.createdAt,
      'fingerprint', record.fingerprint,
      'dmac', record.destinationMac,
      ...(record.decoy === true ? ['decoy', 1] : []),
      ...(record.callbackUrl === undefined ? [] : ['cb', record.callbackUrl]),
      'sends', 1,
      'd1:ch', record.firstChannel,
      'd1:st', 'queued',
      'd1:why', record.firstReason,
      'd1:q', record.createdAt,
    ];
    const ttlMs = this.recordLifetimeMs(record.expiresAt - record.createdAt);
    // Every value is validated or generated (ids, MACs, E.164, an email address, a URL): none has a NUL.
    // In the record's slot, as its id names it: an id from before tags has no lockout to look at.
    const lockBase = options.lockout ? this.keys.lockBaseOf(record.id) : undefined;
    const lockKey = lockBase === undefined ? '' : lockKeyNames(lockBase, record.tenant, record.destinationMac).lock;
    const reply = await this.scripts.kurirCreate(this.keys.verification(record.id), packArgs([ttlMs, lockKey, ...fields]));
    switch (str(reply[0])) {
      case 'created':
        return { created: true };
      case 'locked':
        return { created: false, lockedForMs: num(reply[1]) };
      default:
        return { created: false, fingerprint: str(reply[1]) };
    }
  }

  async get(id: string): Promise<StoredVerification | undefined> {
    return decodeVerification(await this.redis.hgetall(this.keys.verification(id)));
  }

  async check(id: string, tenant: string, candidateMac: string, now: number, lockout: SecurityPolicy['lockout']): Promise<CheckResult> {
    const salt = randomHex(16);
    const lockBase = this.keys.lockBaseOf(id) ?? '';
    const reply = await this.scripts.kurirCheck(
      this.keys.verification(id), tenant, candidateMac, now, salt, this.retentionMs, lockBase, ...lockoutSettingsArgs(lockout),
    );
    const result: CheckResult = {
      status: str(reply[0]) as CheckStatus,
      attemptsRemaining: num(reply[1]),
      ended: num(reply[2]) === 1,
      lockMs: num(reply[3]),
    };
    if (result.ended && reply.length >= 11) result.ending = parseEnding(reply, 4);
    return result;
  }

  /**
   * @param marginMs a code with less than this left is not sent (it would expire on the way).
   */
  async beginSend(id: string, delivery: number, now: number, token: string, marginMs = 0): Promise<BeginSendResult> {
    const reply = await this.scripts.kurirBeginSend(this.keys.verification(id), delivery, now, token, marginMs);
    const kind = str(reply[0]);
    if (kind === 'go' || kind === 'doubt') {
      const channel = str(reply[2]);
      const locale = str(reply[3]);
      if (!isChannel(channel) || !isLocale(locale)) throw new Error('store: corrupt delivery record');
      const cause = str(reply[10]);
      const callStartedAt = str(reply[11]);
      return {
        kind: 'go',
        doubt:
          kind === 'doubt' && (cause === 'worker_lost' || cause === 'provider_timeout')
            ? { cause, callStartedAt: callStartedAt === '' ? undefined : Number(callStartedAt) }
            : undefined,
        context: {
          to: str(reply[1]),
          country: str(reply[12]) || undefined,
          channel,
          locale,
          purpose: str(reply[4]),
          tenant: str(reply[5]),
          codeSealed: str(reply[6]),
          expiresAt: num(reply[7]),
          plan: str(reply[8]).split(',').filter(isChannel),
          deliveryTimeoutSeconds: num(reply[9]),
        },
      };
    }
    if (kind === 'stale') return { kind, status: str(reply[1]), ...(reply[2] === undefined ? {} : { pendingUntil: num(reply[2]) }) };
    if (kind === 'done') return { kind, status: str(reply[1]) };
    return { kind: 'missing' };
  }

  async markSent(
    id: string,
    delivery: number,
    sent: { provider: string; providerMessageId: string; status: DeliveryStatus; at: number },
  ): Promise<{ status: string; fellBack: boolean }> {
    const reply = await this.scripts.kurirMarkSent(
      this.keys.verification(id), delivery, sent.at, sent.provider, sent.providerMessageId, sent.status,
    );
    await this.redis.set(
      this.keys.providerMessage(sent.provider, sent.providerMessageId), `${id}-${delivery}`, 'PX', this.retentionMs,
    );
    return { status: str(reply[0]), fellBack: str(reply[1]) !== '' };
  }

  /** @param outcomeUnknown the failed call may have reached the provider: the retry checks first. */
  async markRetry(id: string, delivery: number, errorCode: string, outcomeUnknown = false): Promise<void> {
    await this.scripts.kurirMarkRetry(this.keys.verification(id), delivery, errorCode, outcomeUnknown ? 1 : 0);
  }

  async fallback(id: string, delivery: number, reason: FallbackReason, now: number, errorCode = ''): Promise<FallbackResult> {
    return parseFallback(await this.scripts.kurirFallback(this.keys.verification(id), delivery, reason, now, errorCode));
  }

  async applyReceipt(
    id: string,
    delivery: number,
    receipt: { status: DeliveryStatus; at: number; errorCode?: string | undefined; providerMessageId: string },
    now: number,
  ): Promise<ReceiptResult> {
    const reply = await this.scripts.kurirReceipt(
      this.keys.verification(id), delivery, receipt.status, receipt.at, receipt.errorCode ?? '', receipt.providerMessageId, now,
    );
    const status = str(reply[1]);
    return {
      changed: num(reply[0]) === 1,
      status: status === 'missing' ? 'missing' : oneOf(DELIVERY_STATUSES, status, 'queued'),
      deliveredAfterFallback: num(reply[2]) === 1,
      // The facts are a nested reply (an empty one when this call was not the first).
      firstDelivered: num(reply[3]) === 1 ? parseDeliveredFacts((reply as unknown[])[4]) : undefined,
      fallback: reply.length > 5 ? parseFallback(reply, 5) : undefined,
    };
  }

  /** Finds the delivery a receipt without our externalId belongs to. */
  async findByProviderMessage(provider: string, providerMessageId: string): Promise<{ id: string; delivery: number } | undefined> {
    const value = await this.redis.get(this.keys.providerMessage(provider, providerMessageId));
    return value === null ? undefined : parseExternalId(value);
  }

  async resend(
    id: string,
    tenant: string,
    channel: Channel | undefined,
    now: number,
    limits: { cooldownMs: number; maxSends: number },
  ): Promise<ResendResult> {
    const reply = await this.scripts.kurirResend(
      this.keys.verification(id), tenant, channel ?? '', now, limits.cooldownMs, limits.maxSends, this.keys.lockBaseOf(id) ?? '',
    );
    const kind = str(reply[0]);
    switch (kind) {
      case 'ok': {
        const chosen = str(reply[2]);
        if (!isChannel(chosen)) throw new Error('store: corrupt resend reply');
        return { kind, delivery: num(reply[1]), channel: chosen, decoy: num(reply[3]) === 1 };
      }
      case 'not_pending':
        return { kind, status: str(reply[1]) };
      case 'cooldown':
      case 'locked':
        return { kind, retryAfterMs: num(reply[1]) };
      case 'not_found':
      case 'max_sends':
      case 'channel_not_allowed':
        return { kind };
      default:
        throw new Error(`store: unexpected resend reply "${kind}"`);
    }
  }

  async cancel(id: string, tenant: string, now: number): Promise<CancelResult> {
    const reply = await this.scripts.kurirCancel(this.keys.verification(id), tenant, now, this.retentionMs);
    const kind = str(reply[0]);
    if (kind === 'canceled' || kind === 'not_found') return { kind };
    return { kind: 'not_pending', status: str(reply[1]) };
  }

  /** Ends a verification still pending at its expiry (the verification-expiry job). */
  async expire(id: string, now: number): Promise<ExpireResult> {
    const reply = await this.scripts.kurirExpire(this.keys.verification(id), now, this.retentionMs);
    const kind = str(reply[0]);
    switch (kind) {
      case 'expired':
        return { kind, tenant: str(reply[1]), ending: parseEnding(reply, 2) };
      case 'not_pending':
        return { kind, status: str(reply[1]) };
      case 'not_due':
        return { kind, msLeft: num(reply[1]) };
      case 'missing':
        return { kind };
      default:
        throw new Error(`store: unexpected expire reply "${kind}"`);
    }
  }

  /**
   * Claims a once-per-verification event field (`cbDelivered`) for `owner`; see CLAIM_EVENT.
   * `none` when the verification has no callback URL (or is gone).
   */
  async claimEvent(id: string, field: string, owner: string): Promise<'claimed' | 'taken' | 'none'> {
    const reply = await this.scripts.kurirClaimEvent(this.keys.verification(id), field, owner);
    const kind = str(reply[0]);
    if (kind === 'claimed' || kind === 'taken' || kind === 'none') return kind;
    throw new Error(`store: unexpected claim reply "${kind}"`);
  }
}

const EXTERNAL_ID = /^(ver_[A-Za-z0-9]{10,40})-([1-9][0-9]{0,2})$/;

/** `externalId` is `<verificationId>-<n>`; anything else did not come from us. */
export function parseExternalId(externalId: string): { id: string; delivery: number } | undefined {
  const match = EXTERNAL_ID.exec(externalId);
  if (match === null || match[1] === undefined || match[2] === undefined) return undefined;
  return { id: match[1], delivery: Number(match[2]) };
}

export function externalIdFor(id: string, delivery: number): string {
  return `${id}-${delivery}`;
}
