import type { SecurityPolicy } from '../config/security-policy.js';
import { bindScript, type BoundScript } from '../store/scripts.js';
import type { RedisClient } from '../store/verification.store.js';
import { tenantHashTag } from './tenant-slot.js';

/**
 * Lockout of a destination after repeated wrong codes across its verifications. A verification
 * already dies after its own attempt limit; this stops an attacker from simply asking for a new
 * code and guessing again. Per tenant, as every send limit is: keys are per destination MAC
 * (never the number) under the tenant's hash tag (tenant-slot.ts), so the send gate reads the
 * lock in the same script as the limits it guards (send-gate.lua.ts).
 */
type LockoutSettings = SecurityPolicy['lockout'];

const RECORD_FAILURE = `
local consecutive, daily, lock = KEYS[1], KEYS[2], KEYS[3]
local maxConsecutive, windowMs, lockMs, maxDaily, dayMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local c = redis.call('INCR', consecutive)
if c == 1 then redis.call('PEXPIRE', consecutive, windowMs) end
local d = redis.call('INCR', daily)
if d == 1 then redis.call('PEXPIRE', daily, dayMs) end
if d >= maxDaily then
  -- The 24 h ceiling: locked until the daily counter itself expires.
  local left = redis.call('PTTL', daily)
  if left < lockMs then left = lockMs end
  redis.call('SET', lock, 'daily', 'PX', left)
  return { 1, left }
end
if c >= maxConsecutive then
  redis.call('SET', lock, 'consecutive', 'PX', lockMs)
  redis.call('DEL', consecutive)
  return { 1, lockMs }
end
return { 0, 0 }
`;

/** A destination's lock in one step: its remaining time, and whether a run of consecutive wrong codes is being counted. */
const STATE = `
return { redis.call('PTTL', KEYS[1]), redis.call('EXISTS', KEYS[2]) }
`;

export interface LockState {
  locked: boolean;
  retryAfterMs: number;
}

/** A destination's lock as read before a check: also whether a right code has a run of wrong ones to end. */
export interface DestinationLockState extends LockState {
  counting: boolean;
}

/** The lock key's PTTL and whether the run counter exists, as the state scripts return them. */
function lockState(ttl: number, counting: number): DestinationLockState {
  return { locked: ttl > 0, retryAfterMs: ttl > 0 ? ttl : 0, counting: counting === 1 };
}

export class DestinationLockout {
  private readonly recordFailureScript: BoundScript<[number, number]>;
  private readonly stateScript: BoundScript<[number, number]>;

  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
  ) {
    this.recordFailureScript = bindScript(redis, 'kurirLockoutFailure', 3, RECORD_FAILURE);
    this.stateScript = bindScript(redis, 'kurirLockoutState', 2, STATE);
  }

  /** A destination's keys for one tenant; `lock` exists (with its PTTL) while it is locked. */
  keys(tenant: string, destinationMac: string): { consecutive: string; daily: string; lock: string } {
    const base = `${this.keyPrefix}:lock:${tenantHashTag(tenant)}:${destinationMac}`;
    return { consecutive: `${base}:fails`, daily: `${base}:day`, lock: `${base}:locked` };
  }

  /**
   * `counting` tells whether a right code has a run of wrong ones to end (recordSuccess), so that
   * an approval without one costs no command. A wrong code counted after this read and before the
   * approval then stays counted: it leans towards locking, never away from it.
   */
  async state(tenant: string, destinationMac: string): Promise<DestinationLockState> {
    const keys = this.keys(tenant, destinationMac);
    const [ttl, counting] = await this.stateScript([keys.lock, keys.consecutive], []);
    return lockState(ttl, counting);
  }

  /** Counts one wrong code; returns whether the destination is now locked. */
  async recordFailure(tenant: string, destinationMac: string, settings: LockoutSettings): Promise<LockState> {
    const keys = this.keys(tenant, destinationMac);
    const [locked, retryAfterMs] = await this.recordFailureScript(
      [keys.consecutive, keys.daily, keys.lock],
      [settings.maxConsecutiveFailures, settings.windowSeconds * 1000, settings.lockSeconds * 1000, settings.maxFailuresPer24Hours, 86_400_000],
    );
    return { locked: locked === 1, retryAfterMs };
  }

  /** A right code ends the run of consecutive failures (the 24 h ceiling keeps counting). */
  async recordSuccess(tenant: string, destinationMac: string): Promise<void> {
    await this.redis.del(this.keys(tenant, destinationMac).consecutive);
  }

  /** Operator override. */
  async unlock(tenant: string, destinationMac: string): Promise<void> {
    const keys = this.keys(tenant, destinationMac);
    await this.redis.del(keys.lock, keys.consecutive);
  }
}
