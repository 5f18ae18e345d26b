import type { SecurityPolicy } from '../config/security-policy.js';
import { lockKeyNames, type KeySpace } from '../store/keys.js';
import type { RedisClient } from '../store/verification.store.js';

/**
 * Lockout of a destination after repeated wrong codes across its verifications. A verification
 * already dies after its own attempt limit; this stops an attacker from simply asking for a new
 * code and guessing again. Per tenant, as every send limit is: keys are per destination MAC
 * (never the number), in the slot of the destination's verifications (keys.ts), so that a check
 * reads the lock, compares the code and counts a wrong one in one script, and a create or resend
 * is refused in the script that writes it (verification.lua.ts; lockout.lua.ts). This module holds what
 * runs outside those: the settings they take, the state for `GET /v1/limits`, the operator's unlock.
 */
type LockoutSettings = SecurityPolicy['lockout'];

/** The settings the scripts take (lockout.lua.ts `lockout_settings`), in their order. */
export function lockoutSettingsArgs(settings: LockoutSettings): number[] {
  return [settings.maxConsecutiveFailures, settings.windowSeconds * 1000, settings.lockSeconds * 1000, settings.maxFailuresPer24Hours];
}

export interface LockState {
  locked: boolean;
  retryAfterMs: number;
}

export class DestinationLockout {
  constructor(
    private readonly redis: RedisClient,
    private readonly keySpace: Pick<KeySpace, 'lockBase'>,
  ) {}

  /** A destination's keys for one tenant (lockout.lua.ts `lock_keys`); `lock` exists, with its PTTL, while it is locked. */
  keys(tenant: string, destinationMac: string): { consecutive: string; daily: string; lock: string } {
    return lockKeyNames(this.keySpace.lockBase(destinationMac), tenant, destinationMac);
  }

  async state(tenant: string, destinationMac: string): Promise<LockState> {
    const ttl = await this.redis.pttl(this.keys(tenant, destinationMac).lock);
    return { locked: ttl > 0, retryAfterMs: ttl > 0 ? ttl : 0 };
  }

  /** Operator override. */
  async unlock(tenant: string, destinationMac: string): Promise<void> {
    const keys = this.keys(tenant, destinationMac);
    await this.redis.del(keys.lock, keys.consecutive);
  }
}
