import type { Channel } from '../domain/channel.js';
import { MICROS_PER_UNIT } from './cost.js';
import { percentile } from './histogram.js';
import { STATS_BUCKETS, type StatsHistogram, type StatsTotals } from './stats.store.js';

/**
 * The answer of `GET /v1/stats`, computed from merged per-minute totals. Rates and percentiles
 * are null when there is nothing to divide by. With a `channel` filter every number counts what
 * happened on that channel: `created` by the first channel of the plan, `sent`/`delivered`/cost by
 * the message's channel, `fallbacks` by the channel fallen back from, and `approved`/`expired` by
 * the channel of the latest delivery — so the conversion of a fallback channel (SMS) can exceed 1.
 */
export interface StatsSummary {
  from: string;
  to: string;
  filters: { country: string | null; channel: Channel | null };
  created: number;
  approved: number;
  expired: number;
  maxAttempts: number;
  conversion: number | null;
  deliveries: { sent: number; delivered: number; deliveryRate: number | null };
  fallbacks: { count: number; rate: number | null };
  timeToDeliver: { p50: number | null; p95: number | null };
  timeToVerify: { p50: number | null; p95: number | null };
  cost: { total: number; currency: string; perApproved: number | null };
}

function ratio(part: number, whole: number): number | null {
  return whole > 0 ? part / whole : null;
}

/** Seconds, to the millisecond: finer would claim a precision the buckets do not have. */
function seconds(value: number | null): number | null {
  return value === null ? null : Math.round(value * 1000) / 1000;
}

function percentiles(totals: StatsTotals, histogram: StatsHistogram): { p50: number | null; p95: number | null } {
  const counts = totals.histograms[histogram];
  const bounds = STATS_BUCKETS[histogram];
  return { p50: seconds(percentile(bounds, counts, 0.5)), p95: seconds(percentile(bounds, counts, 0.95)) };
}

export function summarize(
  totals: StatsTotals,
  window: { fromMs: number; toMs: number; country: string | undefined; channel: Channel | undefined; currency: string },
): StatsSummary {
  const { counters } = totals;
  return {
    from: new Date(window.fromMs).toISOString(),
    to: new Date(window.toMs).toISOString(),
    filters: { country: window.country ?? null, channel: window.channel ?? null },
    created: counters.created,
    approved: counters.approved,
    expired: counters.expired,
    maxAttempts: counters.max_attempts,
    conversion: ratio(counters.approved, counters.created),
    deliveries: { sent: counters.sent, delivered: counters.delivered, deliveryRate: ratio(counters.delivered, counters.sent) },
    fallbacks: { count: counters.fallback, rate: ratio(counters.fallback, counters.created) },
    timeToDeliver: percentiles(totals, 'ttd'),
    timeToVerify: percentiles(totals, 'ttv'),
    cost: {
      total: counters.cost / MICROS_PER_UNIT,
      currency: window.currency,
      perApproved: counters.approved > 0 ? Math.round(counters.cost / counters.approved) / MICROS_PER_UNIT : null,
    },
  };
}
