import type { Logger } from 'pino';
import { isChannel, type Channel } from '../domain/channel.js';
import { DELIVERY_LATENCY_BUCKETS, TIME_TO_VERIFY_BUCKETS } from '../observability/metrics.js';
import { tenantHashTag } from '../security/tenant-slot.js';
import { bindScript, type BoundScript } from '../store/scripts.js';
import { STATS_WRITE_LUA, type StatsWrite } from './stats-write.js';
import type { RedisClient } from '../store/verification.store.js';
import { bucketIndex } from './histogram.js';
import { PendingStats } from './pending-stats.js';
import { IntervalFlusher } from '../runtime/interval-flusher.js';

/**
 * Per-minute usage counters of each tenant, the data behind `GET /v1/stats` (Kurir's own record,
 * independent of any Prometheus).
 *
 * Layout: one hash per tenant and UTC hour, `<prefix>:stats:{<tenant>}:<hour>` (`hour` =
 * epoch ms / 3 600 000), with fields `<minute>:<metric>:<country>:<channel>`:
 * - `minute` 0–59 within the hour;
 * - `metric` a counter of {@link STATS_COUNTERS} (`cost` in micro-units of the price currency), or
 *   a histogram bucket `ttd<i>` (send → delivered) / `ttv<i>` (create → approved), `i` indexing
 *   {@link DELIVERY_LATENCY_BUCKETS} / {@link TIME_TO_VERIFY_BUCKETS} plus one overflow bucket;
 * - `country` ISO-2 (`ZZ` for email and unknown), `channel` whatsapp | sms | email.
 *
 * Bounded: fields per hash ≤ 60 minutes × 35 metrics × channels × countries seen, whatever the
 * volume; each hash expires {@link STATS_RETENTION_SECONDS} after its hour ended. The tenant is
 * the hash tag, so one event is one key (one slot), and a 7-day read is ≤ 169 keys on one node.
 */

export const STATS_COUNTERS = ['created', 'sent', 'delivered', 'fallback', 'approved', 'expired', 'max_attempts', 'cost'] as const;
export type StatsCounter = (typeof STATS_COUNTERS)[number];
export type StatsHistogram = 'ttd' | 'ttv';

export const STATS_BUCKETS: Record<StatsHistogram, readonly number[]> = { ttd: DELIVERY_LATENCY_BUCKETS, ttv: TIME_TO_VERIFY_BUCKETS };

/** 8 days: a full 7-day window (the longest `/v1/stats` accepts) is always still there. */
export const STATS_RETENTION_SECONDS = 8 * 86_400;

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

/** One event's worth of changes, all for the same tenant and minute. */
export interface StatsChange {
  country: string;
  channel: Channel;
  counters?: Partial<Record<StatsCounter, number>>;
  samples?: Partial<Record<StatsHistogram, number>>;
}

export interface StatsFilters {
  country: string | undefined;
  channel: Channel | undefined;
}

/** The merged counters and histogram bucket counts of a time window. */
export interface StatsTotals {
  counters: Record<StatsCounter, number>;
  histograms: Record<StatsHistogram, number[]>;
}

export function emptyTotals(): StatsTotals {
  return {
    counters: Object.fromEntries(STATS_COUNTERS.map((name) => [name, 0])) as Record<StatsCounter, number>,
    histograms: { ttd: new Array<number>(DELIVERY_LATENCY_BUCKETS.length + 1).fill(0), ttv: new Array<number>(TIME_TO_VERIFY_BUCKETS.length + 1).fill(0) },
  };
}

export function statsKey(prefix: string, tenant: string, hour: number): string {
  return `${prefix}:stats:${tenantHashTag(tenant)}:${hour}`;
}

/** The hash fields one change increments, with their amounts. */
export function statsFields(minute: number, change: StatsChange): [string, number][] {
  const suffix = `${change.country}:${change.channel}`;
  const fields: [string, number][] = [];
  for (const name of STATS_COUNTERS) {
    const by = change.counters?.[name];
    if (by !== undefined && by !== 0) fields.push([`${minute}:${name}:${suffix}`, by]);
  }
  for (const histogram of ['ttd', 'ttv'] as const) {
    const seconds = change.samples?.[histogram];
    if (seconds !== undefined && Number.isFinite(seconds)) {
      fields.push([`${minute}:${histogram}${bucketIndex(STATS_BUCKETS[histogram], Math.max(0, seconds))}:${suffix}`, 1]);
    }
  }
  return fields;
}

const COUNTER_NAMES = new Set<string>(STATS_COUNTERS);
const BUCKET_FIELD = /^(ttd|ttv)(\d{1,2})$/;

/** Adds one stored field into `totals` when it passes the filters; unknown fields are ignored. */
export function addField(totals: StatsTotals, field: string, value: number, filters: StatsFilters): void {
  const [, metric, country, channel] = field.split(':');
  if (metric === undefined || country === undefined || channel === undefined || !isChannel(channel)) return;
  if (filters.country !== undefined && country !== filters.country) return;
  if (filters.channel !== undefined && channel !== filters.channel) return;
  if (COUNTER_NAMES.has(metric)) {
    totals.counters[metric as StatsCounter] += value;
    return;
  }
  const bucket = BUCKET_FIELD.exec(metric);
  if (bucket === null) return;
  const counts = totals.histograms[bucket[1] as StatsHistogram];
  const index = Number(bucket[2]);
  if (index < counts.length) counts[index] = (counts[index] ?? 0) + value;
}

/** add: KEYS = the hour's hash, ARGV = a {@link StatsWrite}'s args (stats-write.ts). */
const ADD = `${STATS_WRITE_LUA}
apply_stats(KEYS[1], 1)
return 0
`;

/**
 * How long an event's counts may wait to be written with the others of the same moment. Under
 * load every request and job records an event: batched, a process writes each tenant's hour
 * once per interval instead of once per event (three commands fewer per verification end to
 * end). `/v1/stats` answers whole minutes, so the wait does not show.
 */
export const STATS_FLUSH_INTERVAL_MS = 250;

export interface StatsStoreOptions {
  /**
   * Batch the writes of {@link StatsStore.add} for this long (a process's default:
   * {@link STATS_FLUSH_INTERVAL_MS}); without it every add is written at once. Batched counts
   * are written at the latest by {@link StatsStore.close}: what a crash loses is the last
   * interval's counts, as it loses the Prometheus counters since their last scrape.
   */
  flushIntervalMs?: number;
  /** Where a failed batched write is reported (it is dropped, as a failed single write is). */
  logger?: Pick<Logger, 'warn'>;
}

export class StatsStore {
  private readonly addScript: BoundScript<number>;
  private readonly pending = new PendingStats();
  private readonly flusher: IntervalFlusher | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    options: StatsStoreOptions = {},
  ) {
    this.addScript = bindScript(redis, 'kurirStatsAdd', 1, ADD);
    this.flusher =
      options.flushIntervalMs === undefined
        ? undefined
        : new IntervalFlusher({ intervalMs: options.flushIntervalMs, logger: options.logger, failureMessage: 'stats could not be recorded' }, () =>
            this.pending.drain().map((write) => this.addScript([write.key], write.args)),
          );
  }

  /** The write of one event's changes at `at` (epoch ms); undefined when they change nothing. */
  write(tenant: string, at: number, changes: readonly StatsChange[]): StatsWrite | undefined {
    const hour = Math.floor(at / HOUR_MS);
    const minute = Math.floor((at - hour * HOUR_MS) / MINUTE_MS);
    const args: (string | number)[] = [Math.ceil(((hour + 1) * HOUR_MS) / 1000) + STATS_RETENTION_SECONDS];
    for (const change of changes) for (const [field, by] of statsFields(minute, change)) args.push(field, by);
    return args.length === 1 ? undefined : { key: statsKey(this.prefix, tenant, hour), args };
  }

  /**
   * Records one event's changes at `at`: one script on one key, at once or, batched, with the
   * other events of the interval (then it resolves at once and a failure is logged by the flush).
   */
  async add(tenant: string, at: number, changes: readonly StatsChange[]): Promise<void> {
    const write = this.write(tenant, at, changes);
    if (write === undefined) return;
    if (this.flusher === undefined) {
      await this.addScript([write.key], write.args);
      return;
    }
    this.pending.add(write);
    this.flusher.schedule();
  }

  /** Writes the batched counts now (one script per tenant and hour, issued together). */
  async flush(): Promise<void> {
    await this.flusher?.flush();
  }

  /** Writes what is batched; call before the connection closes. */
  async close(): Promise<void> {
    await this.flusher?.close();
  }

  /**
   * Merged totals of the whole minutes in [fromMs, toMs) (both multiples of a minute) that pass
   * `filters`.
   */
  async totals(tenant: string, fromMs: number, toMs: number, filters: StatsFilters): Promise<StatsTotals> {
    const totals = emptyTotals();
    if (toMs <= fromMs) return totals;
    const firstHour = Math.floor(fromMs / HOUR_MS);
    const lastHour = Math.floor((toMs - 1) / HOUR_MS);
    const pipeline = this.redis.pipeline();
    for (let hour = firstHour; hour <= lastHour; hour += 1) pipeline.hgetall(statsKey(this.prefix, tenant, hour));
    const results = (await pipeline.exec()) ?? [];
    results.forEach(([error, value], offset) => {
      if (error !== null) throw error;
      const hour = firstHour + offset;
      for (const [field, raw] of Object.entries((value ?? {}) as Record<string, string>)) {
        const colon = field.indexOf(':');
        const at = hour * HOUR_MS + Number(field.slice(0, colon)) * MINUTE_MS;
        if (colon <= 0 || !(at >= fromMs && at < toMs)) continue;
        addField(totals, field, Number(raw), filters);
      }
    });
    return totals;
  }
}
