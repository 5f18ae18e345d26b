import { z } from 'zod';
import type { Policy } from '../common/config/policy.js';
import { CHANNELS } from '../common/domain/channel.js';
import { KurirError } from '../common/errors.js';
import { summarize } from '../common/stats/summary.js';
import type { StatsStore } from '../common/stats/stats.store.js';
import { validationError, type Caller, type Reply } from './verifications.handlers.js';

export interface StatsHandlerDeps {
  stats: Pick<StatsStore, 'totals'>;
  policy: Pick<Policy, 'prices'>;
  now: () => number;
}

const MINUTE_MS = 60_000;
const DEFAULT_WINDOW_MS = 3_600_000;
/** The longest window; the counters are kept 8 days, so a full 7 days is always there. */
export const MAX_STATS_WINDOW_MS = 7 * 86_400_000;

const timestamp = z.iso.datetime({ offset: true });

const statsQuerySchema = z.strictObject({
  from: timestamp.optional(),
  to: timestamp.optional(),
  country: z
    .string()
    .regex(/^[A-Za-z]{2}$/, 'ISO 3166-1 alpha-2 (ZZ: email and unknown)')
    .transform((value) => value.toUpperCase())
    .optional(),
  channel: z.enum(CHANNELS).optional(),
});

/**
 * `GET /v1/stats?from=&to=&country=&channel=`: the calling tenant's conversion, delivery and
 * fallback rates, latency percentiles and estimated cost over a window (default: the last hour,
 * at most 7 days), from the per-minute counters Kurir keeps in Redis (common/stats). The window
 * is widened to whole minutes, and the answer says which minutes it covers.
 */
export async function getStats(input: { query: unknown; caller: Caller }, deps: StatsHandlerDeps): Promise<Reply> {
  const parsed = statsQuerySchema.safeParse(input.query);
  if (!parsed.success) throw validationError(parsed.error);
  const { country, channel } = parsed.data;
  const now = deps.now();
  const to = parsed.data.to === undefined ? now : Date.parse(parsed.data.to);
  const from = parsed.data.from === undefined ? to - DEFAULT_WINDOW_MS : Date.parse(parsed.data.from);
  const problem =
    from >= to ? { path: 'from', message: '`from` must be before `to` (`to` defaults to now)' }
    : to - from > MAX_STATS_WINDOW_MS ? { path: 'to', message: 'the window is at most 7 days' }
    : undefined;
  if (problem !== undefined) {
    throw new KurirError('validation_failed', 'The query does not describe a valid window.', { errors: [problem] });
  }
  const fromMs = Math.floor(from / MINUTE_MS) * MINUTE_MS;
  const toMs = Math.ceil(to / MINUTE_MS) * MINUTE_MS;
  const totals = await deps.stats.totals(input.caller.tenant, fromMs, toMs, { country, channel });
  return { status: 200, body: summarize(totals, { fromMs, toMs, country, channel, currency: deps.policy.prices.currency }) };
}
