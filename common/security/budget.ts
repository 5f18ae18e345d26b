import type { Channel } from '../domain/channel.js';
import { bindScript, type BoundScript } from '../store/scripts.js';
import type { RedisClient } from '../store/verification.store.js';
import { tenantHashTag } from './tenant-slot.js';

/**
 * Daily message budget per tenant and channel (UTC days). Consumed by the send worker right
 * before the provider call, so creates, resends and fallbacks all count; the API only peeks to
 * refuse early. One counter key per tenant, channel and day, kept two days.
 */
const CONSUME = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
if limit >= 0 and used >= limit then return { 0, used } end
used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return { 1, used }
`;

export interface BudgetDecision {
  allowed: boolean;
  used: number;
}

function utcDay(now: number): string {
  return new Date(now).toISOString().slice(0, 10).replace(/-/g, '');
}

/** Epoch ms of the next UTC midnight: when a day's budget resets. */
export function nextUtcMidnight(now: number): number {
  const date = new Date(now);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 1);
}

export class DailyBudget {
  private readonly consumeScript: BoundScript<[number, number]>;

  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
  ) {
    this.consumeScript = bindScript(redis, 'kurirBudgetConsume', 1, CONSUME);
  }

  /** The counter of a tenant, channel and UTC day; in the tenant's slot, so the send gate's script can read it. */
  keyFor(tenant: string, channel: Channel, now: number): string {
    return `${this.keyPrefix}:budget:${tenantHashTag(tenant)}:${channel}:${utcDay(now)}`;
  }

  /** Counts one message unless the limit is reached; `limit === null` only counts. */
  async consume(tenant: string, channel: Channel, limit: number | null, now: number): Promise<BudgetDecision> {
    const [allowed, used] = await this.consumeScript([this.keyFor(tenant, channel, now)], [limit ?? -1, 2 * 86_400_000]);
    return { allowed: allowed === 1, used };
  }

  async used(tenant: string, channel: Channel, now: number): Promise<number> {
    return Number((await this.redis.get(this.keyFor(tenant, channel, now))) ?? 0);
  }
}
