import type { SecurityPolicy } from '../config/security-policy.js';
import { bindScript, type BoundScript } from '../store/scripts.js';
import type { RedisClient } from '../store/verification.store.js';

/**
 * Lockout of a destination after repeated wrong codes across its verifications. A verification
 * already dies after its own attempt limit; this stops an attacker from simply asking for a new
 * code and guessing again. Keys are per destination MAC (never the number) and share its hash
 * tag, so each script touches one slot.
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

/** STATE, and whether a third key of the same destination exists. */
const STATE_AND_EXISTS = `
return { redis.call('PTTL', KEYS[1]), redis.call('EXISTS', KEYS[2]), redis.call('EXISTS', KEYS[3]) }
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
  private readonly stateAndExistsScript: BoundScript<[number, number, number]>;

  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
  ) {
    this.recordFailureScript = bindScript(redis, 'kurirLockoutFailure', 3, RECORD_FAILURE);
    this.stateScript = bindScript(redis, 'kurirLockoutState', 2, STATE);
    this.stateAndExistsScript = bindScript(redis, 'kurirLockoutStateAndExists', 3, STATE_AND_EXISTS);
  }

  private keys(destinationMac: string) {
    const base = `${this.keyPrefix}:lock:{${destinationMac}}`;
    return { consecutive: `${base}:fails`, daily: `${base}:day`, lock: `${base}:locked` };
  }

  /**
   * `counting` tells whether a right code has a run of wrong ones to end (recordSuccess), so that
   * an approval without one costs no command. A wrong code counted after this read and before the
   * approval then stays counted: it leans towards locking, never away from it.
   */
  async state(destinationMac: string): Promise<DestinationLockState> {
    const keys = this.keys(destinationMac);
    const [ttl, counting] = await this.stateScript([keys.lock, keys.consecutive], []);
    return lockState(ttl, counting);
  }

  /**
   * `state`, and in the same script whether `sameSlotKey` exists: another fact about this
   * destination that its caller needs at the same moment (a create's no-WhatsApp hint), one
   * round trip instead of two. The key must carry the destination MAC as its hash tag.
   */
  async stateAndExists(destinationMac: string, sameSlotKey: string): Promise<[DestinationLockState, boolean]> {
    const keys = this.keys(destinationMac);
    const [ttl, counting, exists] = await this.stateAndExistsScript([keys.lock, keys.consecutive, sameSlotKey], []);
    return [lockState(ttl, counting), exists === 1];
  }

  /** Counts one wrong code; returns whether the destination is now locked. */
  async recordFailure(destinationMac: string, settings: LockoutSettings): Promise<LockState> {
    const keys = this.keys(destinationMac);
    const [locked, retryAfterMs] = await this.recordFailureScript(
      [keys.consecutive, keys.daily, keys.lock],
      [settings.maxConsecutiveFailures, settings.windowSeconds * 1000, settings.lockSeconds * 1000, settings.maxFailuresPer24Hours, 86_400_000],
    );
    return { locked: locked === 1, retryAfterMs };
  }

  /** A right code ends the run of consecutive failures (the 24 h ceiling keeps counting). */
  async recordSuccess(destinationMac: string): Promise<void> {
    await this.redis.del(this.keys(destinationMac).consecutive);
  }

  /** Operator override. */
  async unlock(destinationMac: string): Promise<void> {
    const keys = this.keys(destinationMac);
    await this.redis.del(keys.lock, keys.consecutive);
  }
}
