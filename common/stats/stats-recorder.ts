import type { Logger } from 'pino';
import type { Policy } from '../config/policy.js';
import type { Channel } from '../domain/channel.js';
import { countryLabel, type Metrics } from '../observability/metrics.js';
import type { OutboundMessage } from '../providers/provider.js';
import type { VerificationStore } from '../store/verification.store.js';
import { toMicros, unitPrice, unitsOnSend } from './cost.js';
import type { StatsChange, StatsStore } from './stats.store.js';

/**
 * The points of the pipeline that feed `/v1/stats` (see stats.store.ts) and the estimated-cost
 * metrics. Statistics are a by-product: a failed stats write is logged and swallowed, never
 * allowed to fail the request or job that caused it (nor to retry a job, which could send again).
 */
export interface StatsDeps {
  stats: StatsStore;
  logger: Logger;
  now: () => number;
}

/** Recording points that also bill a message need the price table and the cost counters. */
export interface BillingDeps extends StatsDeps {
  policy: Pick<Policy, 'prices'>;
  metrics: Pick<Metrics, 'cost' | 'messagesBillable'>;
}

async function record(deps: StatsDeps, tenant: string, changes: StatsChange[]): Promise<void> {
  try {
    await deps.stats.add(tenant, deps.now(), changes);
  } catch (error) {
    deps.logger.warn({ tenant, err: { message: error instanceof Error ? error.message : String(error) } }, 'stats could not be recorded');
  }
}

/** Counts `units` billable units in the cost metrics and returns their cost in micro-units. */
function bill(deps: BillingDeps, channel: Channel, country: string, units: number): number {
  if (units <= 0) return 0;
  const { prices } = deps.policy;
  const amount = unitPrice(prices, channel, country) * units;
  deps.metrics.cost.inc({ channel, country, currency: prices.currency }, amount);
  deps.metrics.messagesBillable.inc({ channel, country });
  return toMicros(amount);
}

export async function recordCreated(deps: StatsDeps, event: { tenant: string; country: string; channel: Channel }): Promise<void> {
  await record(deps, event.tenant, [{ country: event.country, channel: event.channel, counters: { created: 1 } }]);
}

/** The provider accepted a message: counted as sent; SMS (per segment) and email are billed now. */
export async function recordSent(
  deps: BillingDeps,
  event: { tenant: string; country: string; message: OutboundMessage },
): Promise<void> {
  const { channel } = event.message;
  let cost = 0;
  try {
    cost = bill(deps, channel, event.country, unitsOnSend(event.message));
  } catch (error) {
    deps.logger.warn({ err: { message: error instanceof Error ? error.message : String(error) } }, 'cost could not be counted');
  }
  await record(deps, event.tenant, [{ country: event.country, channel, counters: { sent: 1, cost } }]);
}

/** A delivery reached delivered/read for the first time: WhatsApp authentication is billed now. */
export async function recordDelivered(
  deps: BillingDeps,
  event: { tenant: string; country: string; channel: Channel; latencySeconds: number | undefined },
): Promise<void> {
  let cost = 0;
  try {
    cost = event.channel === 'whatsapp' ? bill(deps, 'whatsapp', event.country, 1) : 0;
  } catch (error) {
    deps.logger.warn({ err: { message: error instanceof Error ? error.message : String(error) } }, 'cost could not be counted');
  }
  await record(deps, event.tenant, [
    {
      country: event.country,
      channel: event.channel,
      counters: { delivered: 1, cost },
      ...(event.latencySeconds === undefined ? {} : { samples: { ttd: event.latencySeconds } }),
    },
  ]);
}

/** A fallback away from `from` started (counted once, by whoever decided it). */
export async function recordFallback(
  deps: StatsDeps & { store: Pick<VerificationStore, 'get'> },
  event: { verificationId: string; from: Channel },
): Promise<void> {
  try {
    const verification = await deps.store.get(event.verificationId);
    if (verification === undefined) return;
    await record(deps, verification.tenant, [{ country: countryLabel(verification.country), channel: event.from, counters: { fallback: 1 } }]);
  } catch (error) {
    deps.logger.warn({ err: { message: error instanceof Error ? error.message : String(error) } }, 'stats could not be recorded');
  }
}

/** The end of a verification, as the stats see it. */
export interface EndedStats {
  tenant: string;
  country: string;
  channel: Channel;
  status: string;
  timeToVerifySeconds: number | undefined;
}

/** The stats change of an ended verification; undefined for the outcomes the stats do not report. */
export function endedChange(event: EndedStats): StatsChange | undefined {
  const change: StatsChange = { country: event.country, channel: event.channel };
  switch (event.status) {
    case 'approved':
      change.counters = { approved: 1 };
      if (event.timeToVerifySeconds !== undefined) change.samples = { ttv: event.timeToVerifySeconds };
      return change;
    case 'expired':
      change.counters = { expired: 1 };
      return change;
    case 'max_attempts':
      change.counters = { max_attempts: 1 };
      return change;
    default:
      return undefined;
  }
}

/** A verification ended; only the outcomes the stats report are recorded. */
export async function recordEnded(deps: StatsDeps, event: EndedStats): Promise<void> {
  const change = endedChange(event);
  if (change !== undefined) await record(deps, event.tenant, [change]);
}
