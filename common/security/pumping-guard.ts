/**
 * The SMS-pumping guard: quarantines a number prefix or a country whose sends stop converting.
 *
 * Glossary
 * - **Pumping** (artificially inflated traffic): someone triggers OTP sends to number ranges whose
 *   termination fees they share; those codes are never verified.
 * - **Subject**: what is judged, a number **prefix** (the E.164 number without its last 4 digits,
 *   one block of 10,000 numbers) or a **country** (ISO 3166-1 alpha-2), per tenant.
 * - **Bucket**: the sends and approvals of one subject in one clock minute. An approval is counted
 *   in the bucket of the minute its send was recorded, so it answers exactly those sends.
 * - **Matured send**: a send whose whole minute is older than `graceSeconds`; only those are
 *   expected to be verified by now. Younger sends (and their approvals) stay out of the ratio, so a
 *   legitimate burst is not judged before its users could type the code.
 * - **Conversion**: matured approvals ÷ matured sends over the window. Judged only from `minSends`
 *   matured sends on, never on a few.
 * - **Quarantine**: a subject refused for `quarantineSeconds` with a generic answer. In shadow mode
 *   the same marker is written with `shadow: true`: reported and counted, never refused.
 *
 * Redis layout (`<p>` = keyPrefix; the value escaped so that keys stay unambiguous):
 * - `<p>:pg:{<tenant>}:<dimension>:<value>:n` hash of buckets `s:<minute>`, `a:<minute>`, trimmed
 *   to the window by every send and expiring window + 2 min after the last one;
 * - `<p>:pg:{<tenant>}:<dimension>:<value>:q` hash `until`, `reason`, `shadow`, TTL quarantineSeconds;
 * - `<p>:pg:{<tenant>}:idx` sorted set, member `<dimension>:<value>`, score until, for the operator
 *   list without KEYS/SCAN; trimmed by time, expiring with its latest quarantine.
 * Every key of a tenant's guard carries the tenant's hash tag, as its send limits do
 * (tenant-slot.ts): one script touches one slot (Cluster-safe), and the send gate counts a send
 * for the guard in the same step as it checks the limits.
 */
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { IntervalFlusher } from '../runtime/interval-flusher.js';
import { bindScript, type BoundScript } from '../store/scripts.js';
import { bindKeyedScript, type KeyedScript } from './keyed-script.js';
import { PendingApprovals, type ApprovalBatch } from './pending-approvals.js';
import * as lua from './pumping-guard.lua.js';
import { tenantHashTag } from './tenant-slot.js';

/** What a quarantine applies to. */
export type GuardDimension = 'prefix' | 'country';

/** The `security.pumping` part of the policy (see common/config/security-policy.ts). */
export interface PumpingGuardSettings {
  /** `enforce` refuses quarantined subjects; `shadow` only reports them (for tuning); `off` does nothing. */
  mode: 'enforce' | 'shadow' | 'off';
  /** Sliding window of the ratio, e.g. 3600. */
  windowSeconds: number;
  /** Sends younger than this are not yet expected to be verified and stay out of the ratio, e.g. 120. Must be below windowSeconds. */
  graceSeconds: number;
  /** Judge only with at least this many matured sends in the window, e.g. 100. */
  minSends: number;
  /** Quarantine when matured approvals ÷ matured sends falls below this, e.g. 0.2. */
  minConversion: number;
  /** How long a quarantine lasts, e.g. 3600. */
  quarantineSeconds: number;
}

/** One judged subject, e.g. `{ dimension: 'prefix', value: '+62812345' }` or `{ dimension: 'country', value: 'ID' }`. */
export interface GuardSubject {
  dimension: GuardDimension;
  value: string;
}

/** A quarantine as stored: `until` is epoch ms on the clock passed as `now`. */
export interface GuardQuarantine {
  subject: GuardSubject;
  until: number;
  /** Why, for the log, e.g. `conversion 0.05 < 0.2 over 140 sends in 3600 s`. Never shown to callers. */
  reason: string;
  /** True: observed in shadow mode (or read under shadow mode) — the caller lets the send through but counts and logs it. */
  shadow: boolean;
}

/** The guard's answer before a send. */
export type GuardVerdict = { kind: 'allow' } | ({ kind: 'quarantined' } & GuardQuarantine);

/** Current numbers of one subject over the window. */
export interface GuardStats {
  /** Sends in the window, matured or not. */
  sends: number;
  /** Approvals in the window, matured or not. */
  approvals: number;
  /** Sends old enough to be judged. */
  maturedSends: number;
  /** Matured approvals ÷ matured sends; null while nothing has matured. */
  conversion: number | null;
}

const MINUTE_MS = 60_000;
/** Counts outlive the window a little, so a trim that is due but not yet run loses nothing. */
const COUNTS_MARGIN_MS = 2 * MINUTE_MS;
const INDEX_MARGIN_MS = MINUTE_MS;
const ALLOW: GuardVerdict = { kind: 'allow' };

type Reply = (string | number | null)[];

/** The guard's scripts bound to one connection (see pumping-guard.lua.ts for their contracts). */
interface GuardScripts {
  recordSend: KeyedScript<Reply>;
  recordApprovals: KeyedScript<number>;
  stats: BoundScript<number[]>;
  release: BoundScript<number>;
}

function bindScripts(redis: Redis | Cluster): GuardScripts {
  return {
    recordSend: bindKeyedScript(redis, 'kurirGuardRecordSend', lua.RECORD_SEND),
    recordApprovals: bindKeyedScript(redis, 'kurirGuardRecordApprovals', lua.RECORD_APPROVALS),
    stats: bindScript(redis, 'kurirGuardStats', 1, lua.STATS),
    release: bindScript(redis, 'kurirGuardRelease', 3, lua.RELEASE),
  };
}

/** Percent-escapes what would change a key's meaning: `{`/`}` (hash tags), `:` (separators), `%` itself. */
function escapeKeyPart(part: string): string {
  return part.replace(/[%{}:]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The guard's key names (see the layout in the module comment); exported for tests and tooling. */
export function pumpingGuardKeys(keyPrefix: string): {
  counts(tenant: string, subject: GuardSubject): string;
  quarantine(tenant: string, subject: GuardSubject): string;
  index(tenant: string): string;
} {
  const base = (tenant: string) => `${keyPrefix}:pg:${tenantHashTag(tenant)}`;
  const subjectBase = (tenant: string, s: GuardSubject) => `${base(tenant)}:${s.dimension}:${escapeKeyPart(s.value)}`;
  return {
    counts: (tenant, subject) => `${subjectBase(tenant, subject)}:n`,
    quarantine: (tenant, subject) => `${subjectBase(tenant, subject)}:q`,
    index: (tenant) => `${base(tenant)}:idx`,
  };
}

/** A subject as a member of the tenant's quarantine index. */
export function memberOf(subject: GuardSubject): string {
  return `${subject.dimension}:${subject.value}`;
}

function subjectOf(member: string): GuardSubject | undefined {
  const colon = member.indexOf(':');
  const dimension = member.slice(0, colon);
  if (colon < 1 || (dimension !== 'prefix' && dimension !== 'country')) return undefined;
  return { dimension, value: member.slice(colon + 1) };
}

/** The same subject twice in one call would count one send twice. */
export function distinctSubjects(subjects: readonly GuardSubject[]): GuardSubject[] {
  const seen = new Map<string, GuardSubject>();
  for (const subject of subjects) {
    if (subject.value === '') throw new RangeError(`pumping guard: empty ${subject.dimension}`);
    seen.set(memberOf(subject), subject);
  }
  return [...seen.values()];
}

/**
 * The schema bounds each value; this catches the combination it cannot: a grace as long as the
 * window would leave nothing ever matured, silently disabling the guard.
 */
function assertSettings(s: PumpingGuardSettings): void {
  const ok =
    s.windowSeconds > 0 &&
    s.graceSeconds >= 0 &&
    s.graceSeconds < s.windowSeconds &&
    s.minSends >= 1 &&
    s.minConversion >= 0 &&
    s.minConversion <= 1 &&
    s.quarantineSeconds > 0;
  if (!ok) throw new RangeError(`pumping guard: inconsistent settings ${JSON.stringify(s)}`);
}

/**
 * The settings as the scripts read them (pumping-guard.lua.ts, `guard_settings`), after checking
 * them; for a mode other than `off`.
 */
export function guardSettingsArgs(settings: PumpingGuardSettings): (string | number)[] {
  assertSettings(settings);
  const windowMs = settings.windowSeconds * 1000;
  return [
    windowMs,
    settings.graceSeconds * 1000,
    settings.minSends,
    settings.minConversion,
    settings.quarantineSeconds * 1000,
    settings.mode === 'shadow' ? 1 : 0,
    windowMs + COUNTS_MARGIN_MS,
    INDEX_MARGIN_MS,
  ];
}

/** The keys and member arguments of a send recorded for `subjects`, in the scripts' order. */
export function guardSendParts(
  keys: ReturnType<typeof pumpingGuardKeys>,
  tenant: string,
  subjects: readonly GuardSubject[],
): { subjectKeys: string[]; index: string; members: string[] } {
  return {
    subjectKeys: subjects.flatMap((subject) => [keys.counts(tenant, subject), keys.quarantine(tenant, subject)]),
    index: keys.index(tenant),
    members: subjects.map(memberOf),
  };
}

/**
 * The quarantines a send created, from a script reply that lists them from `offset` on as
 * `subjectIndex (1-based), until, reason, shadow` each.
 */
export function createdQuarantines(reply: readonly (string | number | null)[], offset: number, subjects: readonly GuardSubject[]): GuardQuarantine[] {
  const created: GuardQuarantine[] = [];
  for (let i = offset; i + 3 < reply.length; i += 4) {
    const subject = subjects[Number(reply[i]) - 1];
    if (subject === undefined) throw new Error('pumping guard: reply names no subject');
    created.push({ subject, until: Number(reply[i + 1]), reason: String(reply[i + 2] ?? ''), shadow: Number(reply[i + 3]) === 1 });
  }
  return created;
}

export interface PumpingGuardOptions {
  keyPrefix: string;
  /**
   * Batch approvals for this long (a process's default: {@link GUARD_APPROVAL_FLUSH_INTERVAL_MS});
   * without it each is written at once. A judgement may then miss the approvals of the last
   * interval (as if those users had typed their code that much later) and a crash loses them:
   * both lean towards quarantining, never away from it, by a fraction of a second's approvals
   * against a window of sends judged after a grace of minutes.
   */
  flushIntervalMs?: number;
  /** Where a failed batched write is reported. */
  logger?: Pick<Logger, 'warn'>;
}

/** How long a process batches the guard's approvals: every approved check records one. */
export const GUARD_APPROVAL_FLUSH_INTERVAL_MS = 250;

/**
 * Judges prefixes and countries by the conversion of their recent sends and quarantines the ones
 * that burst without converting. Stateless between calls: all state is in Redis, so any number of
 * API processes may share it.
 *
 * Flow: `check` before queueing a send; `recordSend` once it is accepted (this is where the rule
 * trips); `recordApproval` when its verification is approved. The send gate does the first two
 * inside its own script, with the same Lua (send-gate.lua.ts).
 */
export class PumpingGuard {
  private readonly scripts: GuardScripts;
  /** Its key names, for the send gate's script, which counts sends in the same step as the limits. */
  readonly keys: ReturnType<typeof pumpingGuardKeys>;

  private readonly pendingApprovals = new PendingApprovals();
  private readonly approvalFlusher: IntervalFlusher | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    options: PumpingGuardOptions,
  ) {
    this.scripts = bindScripts(redis);
    this.keys = pumpingGuardKeys(options.keyPrefix);
    this.approvalFlusher =
      options.flushIntervalMs === undefined
        ? undefined
        : new IntervalFlusher(
            { intervalMs: options.flushIntervalMs, logger: options.logger, failureMessage: 'pumping guard approvals could not be recorded' },
            () => this.pendingApprovals.drain().map((batch) => this.writeApprovals(batch)),
          );
  }

  /**
   * Before a send: is any subject quarantined (or, in shadow mode, would it be)? A refusing
   * verdict wins over a shadow one. The reads are issued together (one round trip). The send gate
   * makes the same check inside its script (send-gate.lua.ts); this one serves GET /v1/limits.
   */
  async check(tenant: string, subjects: readonly GuardSubject[], settings: PumpingGuardSettings, now: number): Promise<GuardVerdict> {
    if (settings.mode === 'off' || subjects.length === 0) return ALLOW;
    const found = await Promise.all(distinctSubjects(subjects).map((subject) => this.readQuarantine(tenant, subject, now)));
    let observed: GuardVerdict = ALLOW;
    for (const quarantine of found) {
      if (quarantine === undefined) continue;
      // A shadow marker never refuses, even once the mode is enforce: it was never meant to, and
      // the next recorded send upgrades it if the traffic is still bad.
      const shadow = settings.mode === 'shadow' || quarantine.shadow;
      const verdict: GuardVerdict = { kind: 'quarantined', ...quarantine, shadow };
      if (!shadow) return verdict;
      if (observed.kind === 'allow') observed = verdict;
    }
    return observed;
  }

  /**
   * After a send was accepted for queueing: counts it for every subject, re-evaluates them and
   * quarantines those whose rule trips. Returns only the quarantines this call created, so the
   * caller logs and counts each once even under concurrent sends.
   */
  async recordSend(
    tenant: string,
    subjects: readonly GuardSubject[],
    settings: PumpingGuardSettings,
    now: number,
  ): Promise<GuardVerdict[]> {
    if (settings.mode === 'off') return [];
    const settingsArgs = guardSettingsArgs(settings);
    const judged = distinctSubjects(subjects);
    if (judged.length === 0) return [];
    const { subjectKeys, index, members } = guardSendParts(this.keys, tenant, judged);
    const reply = await this.scripts.recordSend([index, ...subjectKeys], [now, ...settingsArgs, ...members]);
    return createdQuarantines(reply, 0, judged).map((quarantine) => ({ kind: 'quarantined', ...quarantine }));
  }

  /**
   * On approval of a verification whose send was recorded at `sentAt`: counts the conversion in
   * that send's bucket. Batched (see {@link PumpingGuardOptions}), it resolves at once and the
   * flush writes it with the interval's others; a failed flush is logged and its approvals lost.
   */
  async recordApproval(tenant: string, subjects: readonly GuardSubject[], settings: PumpingGuardSettings, sentAt: number, now: number): Promise<void> {
    if (settings.mode === 'off') return;
    const counted = distinctSubjects(subjects);
    if (counted.length === 0) return;
    assertSettings(settings);
    const windowMs = settings.windowSeconds * 1000;
    const minute = Math.floor(sentAt / MINUTE_MS);
    // Its send's bucket has left the window (and been trimmed): there is nothing to raise.
    if (minute < Math.floor((now - windowMs) / MINUTE_MS)) return;
    const countsKeys = counted.map((subject) => this.keys.counts(tenant, subject));
    if (this.approvalFlusher === undefined) {
      const single = new PendingApprovals();
      single.add(tenant, windowMs, countsKeys, minute, now);
      await Promise.all(single.drain().map((batch) => this.writeApprovals(batch)));
      return;
    }
    this.pendingApprovals.add(tenant, windowMs, countsKeys, minute, now);
    this.approvalFlusher.schedule();
  }

  /** Writes the batched approvals now (one script per tenant, issued together). */
  async flush(): Promise<void> {
    await this.approvalFlusher?.flush();
  }

  /** Writes what is batched; call before the connection closes. */
  async close(): Promise<void> {
    await this.approvalFlusher?.close();
  }

  private async writeApprovals(batch: ApprovalBatch): Promise<void> {
    await this.scripts.recordApprovals(batch.keys, batch.args);
  }

  /** Operator view: the tenant's live quarantines and shadow markers, soonest to end first. */
  async listQuarantines(tenant: string, now: number): Promise<GuardQuarantine[]> {
    const index = this.keys.index(tenant);
    await this.redis.zremrangebyscore(index, '-inf', now);
    const members = await this.redis.zrangebyscore(index, `(${now}`, '+inf');
    const found = await Promise.all(
      members.map((member) => {
        const subject = subjectOf(member);
        return subject === undefined ? undefined : this.readQuarantine(tenant, subject, now);
      }),
    );
    return found
      .filter((quarantine): quarantine is GuardQuarantine => quarantine !== undefined)
      .sort((a, b) => a.until - b.until);
  }

  /**
   * Operator override: lifts the quarantine (or shadow marker) and forgets the subject's counts,
   * so it is judged afresh after a new minimum volume rather than re-quarantined by its next send
   * on the evidence just overruled. Returns whether there was one to lift.
   */
  async release(tenant: string, subject: GuardSubject): Promise<boolean> {
    const existed = await this.scripts.release(
      [this.keys.counts(tenant, subject), this.keys.quarantine(tenant, subject), this.keys.index(tenant)],
      [memberOf(subject)],
    );
    return Number(existed) === 1;
  }

  /** Current numbers of a subject over the window (for GET /v1/limits and tests); works in every mode. */
  async stats(tenant: string, subject: GuardSubject, settings: PumpingGuardSettings, now: number): Promise<GuardStats> {
    const reply = await this.scripts.stats(
      [this.keys.counts(tenant, subject)],
      [now, settings.windowSeconds * 1000, settings.graceSeconds * 1000],
    );
    const maturedSends = Number(reply[2]);
    return {
      sends: Number(reply[0]),
      approvals: Number(reply[1]),
      maturedSends,
      conversion: maturedSends === 0 ? null : Number(reply[3]) / maturedSends,
    };
  }

  /** The stored quarantine of a subject if it is still running on the caller's clock. */
  private async readQuarantine(tenant: string, subject: GuardSubject, now: number): Promise<GuardQuarantine | undefined> {
    const [until, reason, shadow] = await this.redis.hmget(this.keys.quarantine(tenant, subject), 'until', 'reason', 'shadow');
    // The key's TTL ends it in Redis time; comparing `until` too keeps the answer exact on the
    // caller's clock (and on a fake one in tests).
    if (until === null || Number(until) <= now) return undefined;
    return { subject, until: Number(until), reason: reason ?? '', shadow: shadow === '1' };
  }
}
