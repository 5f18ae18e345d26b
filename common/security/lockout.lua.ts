/**
 * The destination lockout's Lua (lockout.ts), for the store scripts that run in the slot of a
 * destination's verifications and learn the destination from the record: check (is it locked;
 * count a wrong code; a right one ends the run) — so a check is one atomic step — and resend.
 * (Create is given the lock key itself: the caller knows the destination.)
 *
 * Key names are built here from a base the caller passes (keys.ts `lockBase`: the destination's
 * hash tag included) and the record's tenant and destination MAC, the way BullMQ's scripts build
 * job keys from their queue's prefix: every key built carries the slot's hash tag, so the script
 * still touches one slot. keys.ts `lockKeyNames` is the same naming in TypeScript.
 *
 * Settings, in this order from the caller's first settings argument: maxConsecutiveFailures,
 * windowMs (the consecutive run's), lockMs, maxFailuresPer24Hours.
 */
export const LOCKOUT_PRELUDE = `
local LOCK_DAY_MS = 86400000

local function lock_keys(base, tenant, dmac)
  local k = base .. tenant .. ':' .. dmac
  return { fails = k .. ':fails', day = k .. ':day', locked = k .. ':locked' }
end

local function lockout_settings(first)
  return { maxConsecutive = tonumber(ARGV[first]), windowMs = tonumber(ARGV[first + 1]),
    lockMs = tonumber(ARGV[first + 2]), maxDaily = tonumber(ARGV[first + 3]) }
end

-- Counts one wrong code → how long this one locked the destination for, or 0.
local function record_failure(lk, s)
  local c = redis.call('INCR', lk.fails)
  if c == 1 then redis.call('PEXPIRE', lk.fails, s.windowMs) end
  local d = redis.call('INCR', lk.day)
  if d == 1 then redis.call('PEXPIRE', lk.day, LOCK_DAY_MS) end
  if d >= s.maxDaily then
    -- The 24 h ceiling: locked until the daily counter itself expires.
    local left = redis.call('PTTL', lk.day)
    if left < s.lockMs then left = s.lockMs end
    redis.call('SET', lk.locked, 'daily', 'PX', left)
    return left
  end
  if c >= s.maxConsecutive then
    redis.call('SET', lk.locked, 'consecutive', 'PX', s.lockMs)
    redis.call('DEL', lk.fails)
    return s.lockMs
  end
  return 0
end
`;
