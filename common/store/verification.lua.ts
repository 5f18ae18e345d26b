import { LOCKOUT_PRELUDE } from '../security/lockout.lua.js';
import { UNPACK_ARGV_LUA } from './packed-args.js';

/**
 * The Lua scripts behind every state change of a verification. Each runs atomically on the one
 * hash `KEYS[1]` that holds the verification and its deliveries, which is what makes "at most one
 * fallback per delivery", "exactly one approval" and "receipts only move forward" hold under any
 * concurrency of API processes, workers and the scheduler.
 *
 * Field names in the hash: verification fields by name (`status`, `expiresAt`, …) and delivery
 * fields as `d<n>:<field>` (`d1:st`, `d1:ch`, …) so that a verification is a single key.
 */

/** Helpers shared by the scripts (Lua has no modules inside EVAL). */
const PRELUDE = `
local RANK = { queued = 0, retrying = 1, sending = 2, accepted = 3, sent = 4, failed = 5, delivered = 6, read = 7 }
local KEY = KEYS[1]

local function dfield(n, name) return 'd' .. n .. ':' .. name end

-- What an ending is reported with (metrics, stats, the pumping guard, whether to emit a callback
-- event), read in the step that ends the verification so its caller needs no read of the record
-- afterwards: purpose, country, to, kind, createdAt, the latest delivery's channel, 1 if there is
-- a callback URL.
local function ending()
  local e = redis.call('HMGET', KEY, 'purpose', 'country', 'to', 'kind', 'createdAt', 'sends', 'cb')
  local channel = redis.call('HGET', KEY, dfield(e[6] or '1', 'ch'))
  return e[1] or '', e[2] or '', e[3] or '', e[4] or '', e[5] or '0', channel or '', (e[7] and e[7] ~= '') and 1 or 0
end

-- Ends a verification: drops the sealed code (nothing left to send) and shortens the record's
-- life to the retention window, so finished verifications do not hold memory until their TTL.
local function finish(status, now, retentionMs)
  redis.call('HSET', KEY, 'status', status, 'endedAt', now)
  redis.call('HDEL', KEY, 'codeSealed')
  redis.call('PEXPIRE', KEY, retentionMs)
end

local function split(csv)
  local out = {}
  for item in string.gmatch(csv, '[^,]+') do out[#out + 1] = item end
  return out
end

local function next_channel(plan_csv, current)
  local plan = split(plan_csv)
  for i, channel in ipairs(plan) do
    if channel == current then return plan[i + 1] end
  end
  for _, channel in ipairs(plan) do
    if channel ~= current then return channel end
  end
  return nil
end

-- Whether some delivery still waits for a delivery timeout: sent (accepted/sent), not settled,
-- not fallen back from, with a channel to fall back to (deadlines.ts, deliveryDeadlines).
local function any_waiting(plan_csv, sends)
  for i = 1, sends do
    local f = redis.call('HMGET', KEY, dfield(i, 'st'), dfield(i, 'sent'), dfield(i, 'fb'), dfield(i, 'ch'))
    if (f[1] == 'accepted' or f[1] == 'sent') and f[2] and not f[3] and next_channel(plan_csv, f[4]) then return true end
  end
  return false
end

-- What counting delivery n's first delivered state needs (receipt.ts), read in the step that
-- claims it so that its caller needs no read of the record: tenant, country, the delivery's
-- channel, sentAt and deliveredAt, 1 if there is a callback URL, the expiry, and 1 when the
-- verification's timer may go back to its expiry (still pending, n had a timeout armed — its
-- plan has a next channel — and no delivery waits for one any more).
local function delivered_facts(n)
  local v = redis.call('HMGET', KEY, 'tenant', 'country', 'status', 'expiresAt', 'plan', 'sends', 'cb')
  local d = redis.call('HMGET', KEY, dfield(n, 'ch'), dfield(n, 'sent'), dfield(n, 'dlv'))
  local plan = v[5] or ''
  local idle = v[3] == 'pending' and d[1] and next_channel(plan, d[1]) and not any_waiting(plan, tonumber(v[6]) or 0)
  return { v[1] or '', v[2] or '', d[1] or '', d[2] or '', d[3] or '', (v[7] and v[7] ~= '') and 1 or 0, v[4] or '0', idle and 1 or 0 }
end

-- Starts delivery n+1 on the next channel of the plan after delivery n, at most once per
-- delivery: the d<n>:fb marker is written in the same atomic step. Returns
-- {'fallback', m, channel} | {'already', m, channel} | {'exhausted'} | {'ended', status}.
local function start_fallback(n, reason, now)
  local fb = redis.call('HGET', KEY, dfield(n, 'fb'))
  if fb == '0' then return { 'exhausted' } end
  if fb then return { 'already', tonumber(fb), redis.call('HGET', KEY, dfield(fb, 'ch')) } end
  local v = redis.call('HMGET', KEY, 'status', 'expiresAt', 'plan', 'sends')
  if v[1] ~= 'pending' or now >= tonumber(v[2]) then return { 'ended', v[1] == 'pending' and 'expired' or v[1] } end
  local channel = redis.call('HGET', KEY, dfield(n, 'ch'))
  local nxt = next_channel(v[3], channel)
  if not nxt then
    redis.call('HSET', KEY, dfield(n, 'fb'), 0)
    return { 'exhausted' }
  end
  local m = tonumber(v[4]) + 1
  redis.call('HSET', KEY, 'sends', m, 'lastSendAt', now,
    dfield(n, 'fb'), m,
    dfield(m, 'ch'), nxt, dfield(m, 'st'), 'queued', dfield(m, 'why'), reason, dfield(m, 'q'), now)
  return { 'fallback', m, nxt }
end
`;

function script(body: string): string {
  return `${PRELUDE}\n${body}`;
}

/**
 * create: ARGV (packed, packed-args.ts: a record has ~50) = recordTtlMs, the destination's lock
 * key in the record's slot (lockout.ts; '' to skip the lockout: a decoy, which is never sent), then
 * field/value pairs. Writes nothing when the id exists (an idempotent replay) and returns the
 * stored request fingerprint so the caller can tell a true replay from a reused key; writes
 * nothing either while the destination is locked, which the record's slot is the place to know.
 * → {'created'} | {'exists', fingerprint} | {'locked', retryAfterMs}
 */
export const CREATE = script(`${UNPACK_ARGV_LUA}
if redis.call('EXISTS', KEY) == 1 then
  return { 'exists', redis.call('HGET', KEY, 'fingerprint') or '' }
end
if ARGV[2] ~= '' then
  local locked = redis.call('PTTL', ARGV[2])
  if locked > 0 then return { 'locked', locked } end
end
redis.call('HSET', KEY, unpack(ARGV, 3))
redis.call('PEXPIRE', KEY, ARGV[1])
return { 'created' }
`);

/**
 * check: ARGV = tenant, candidateMac, now, blindingSalt, retentionMs, lockBase ('' for an id from
 * before destination tags: no lockout), then the lockout's 4 settings (lockout.lua.ts).
 * One step for the whole check: the destination's lockout refuses first (whatever the
 * verification's state), then the attempt is counted and compared, a wrong code counts towards
 * the lockout and a right one ends the run of wrong ones — so concurrent guesses can neither
 * exceed the attempt limit, nor approve twice, nor slip past a lock another check just set. The
 * comparison is of SHA-1(salt .. mac) on both sides with a fresh random salt per call (the
 * "double HMAC" blinding): whatever Lua's string equality leaks about timing is about values the
 * caller cannot predict, so it says nothing about the stored MAC.
 * → {status, attemptsRemaining, ended 0|1 (this call ended the verification), lockMs}: the
 *   status after this check, `consumed` for an already approved one, `not_found` for an unknown
 *   id or another tenant's, `locked` for a locked destination (lockMs: how much longer); lockMs is
 *   also set when this wrong code locked it. When ended, followed by the ending: purpose,
 *   country, to, kind, createdAt, latest channel, hasCallback 0|1.
 */
export const CHECK = script(`${LOCKOUT_PRELUDE}
local tenant, candidate, now, salt, retention, lockBase = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local v = redis.call('HMGET', KEY, 'tenant', 'status', 'expiresAt', 'attempts', 'maxAttempts', 'codeMac', 'dmac', 'decoy')
if not v[1] or v[1] ~= tenant then return { 'not_found', 0, 0, 0 } end
local dmac = v[7] or ''
local lk
if lockBase ~= '' and dmac ~= '' then
  lk = lock_keys(lockBase, tenant, dmac)
  -- Too many wrong codes across this destination's verifications: refuse guesses for a while.
  local locked = redis.call('PTTL', lk.locked)
  if locked > 0 then return { 'locked', 0, 0, locked } end
end
-- A wrong code (this attempt's, or one past the limit) counts towards the destination's lockout.
local function wrong()
  if lk then return record_failure(lk, lockout_settings(7)) end
  return 0
end
local status, expiresAt, attempts, maxAttempts = v[2], tonumber(v[3]), tonumber(v[4]), tonumber(v[5])
if status == 'pending' and now >= expiresAt then
  finish('expired', now, retention)
  return { 'expired', 0, 1, 0, ending() }
end
-- An approved verification is consumed: report it apart so the API can answer as for an unknown id.
if status ~= 'pending' then return { status == 'approved' and 'consumed' or status, 0, 0, 0 } end
if attempts >= maxAttempts then
  finish('max_attempts', now, retention)
  return { 'max_attempts', 0, 1, wrong(), ending() }
end
attempts = redis.call('HINCRBY', KEY, 'attempts', 1)
-- A decoy (a silently refused create) was never sent: nothing the caller types can match it.
if not v[8] and redis.sha1hex(salt .. v[6]) == redis.sha1hex(salt .. candidate) then
  redis.call('HSET', KEY, 'approvedAt', now)
  finish('approved', now, retention)
  -- A right code ends the run of consecutive wrong ones (the 24 h ceiling keeps counting).
  if lk then redis.call('DEL', lk.fails) end
  return { 'approved', maxAttempts - attempts, 1, 0, ending() }
end
if attempts >= maxAttempts then
  finish('max_attempts', now, retention)
  return { 'max_attempts', 0, 1, wrong(), ending() }
end
return { 'pending', maxAttempts - attempts, 0, wrong() }
`);

/**
 * begin_send: ARGV = n, now, token, marginMs. Moves delivery n to `sending` only from `queued` or
 * `retrying` (or from `sending` left behind by a run with another token, i.e. a worker that died
 * mid-call), so a duplicate or replayed job never sends a finished delivery again. Refuses when
 * the verification is no longer pending: a backlog never delivers a stale code.
 * The run that goes is told when the delivery is *in doubt* — an earlier call may have reached
 * the provider: a `sending` left by a dead worker (`worker_lost`) or a retry after a call whose
 * outcome was unknown (`provider_timeout`, flagged by mark_retry) — with when that call started.
 * → {'go' | 'doubt', to, channel, locale, purpose, tenant, codeSealed, expiresAt, plan,
 *    timeoutSeconds, doubtCause, doubtSince, country ('' for email)}
 *   | {'stale', status, [expiresAt: only for a verification still pending, too close to its
 *      expiry to send]} | {'done', deliveryStatus} | {'missing'}
 */
export const BEGIN_SEND = script(`
local n, now, token, margin = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4] or '0')
local d = redis.call('HMGET', KEY, dfield(n, 'st'), dfield(n, 'tok'), dfield(n, 'ch'), dfield(n, 'sst'), dfield(n, 'dbt'))
if not d[1] then return { 'missing' } end
local v = redis.call('HMGET', KEY, 'status', 'expiresAt', 'to', 'locale', 'purpose', 'tenant', 'codeSealed', 'plan', 'timeout', 'decoy', 'country')
if v[10] then return { 'stale', 'decoy' } end
-- A code with less than the margin left would arrive dead: treat it as expired already.
if v[1] ~= 'pending' then return { 'stale', v[1] } end
if now + margin >= tonumber(v[2]) then return { 'stale', 'expired', v[2] } end
local st = d[1]
if st == 'queued' or st == 'retrying' or (st == 'sending' and d[2] ~= token) then
  local cause = ''
  if st == 'sending' then cause = 'worker_lost' elseif st == 'retrying' and d[5] then cause = 'provider_timeout' end
  redis.call('HSET', KEY, dfield(n, 'st'), 'sending', dfield(n, 'tok'), token, dfield(n, 'sst'), now)
  redis.call('HDEL', KEY, dfield(n, 'dbt'))
  return { cause == '' and 'go' or 'doubt', v[3], d[3], v[4], v[5], v[6], v[7], v[2], v[8], v[9], cause, d[4] or '', v[11] or '' }
end
return { 'done', st }
`);

/**
 * mark_sent: ARGV = n, now, provider, providerMessageId, status. Records the provider's answer;
 * the status only moves forward because a receipt may already have overtaken the answer.
 * → {deliveryStatus, fallbackMarker or ''}
 */
export const MARK_SENT = script(`
local n, now, provider, pid, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local st = redis.call('HGET', KEY, dfield(n, 'st'))
if not st then return { 'missing', '' } end
redis.call('HSET', KEY, dfield(n, 'pv'), provider, dfield(n, 'pid'), pid)
redis.call('HSETNX', KEY, dfield(n, 'sent'), now)
if RANK[status] > RANK[st] then
  redis.call('HSET', KEY, dfield(n, 'st'), status)
  st = status
end
return { st, redis.call('HGET', KEY, dfield(n, 'fb')) or '' }
`);

/**
 * mark_retry: ARGV = n, errorCode, outcomeUnknown (1|0). A transient failure: the next job attempt
 * may send again — after checking with the provider when this call may have reached it.
 */
export const MARK_RETRY = script(`
local n, err, unknown = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', KEY, dfield(n, 'st')) == 'sending' then
  redis.call('HSET', KEY, dfield(n, 'st'), 'retrying', dfield(n, 'err'), err)
  if unknown == '1' then redis.call('HSET', KEY, dfield(n, 'dbt'), '1') end
  return 1
end
return 0
`);

/**
 * fallback: ARGV = n, reason (failed|rejected|timeout), now, errorCode.
 * For `failed`/`rejected` delivery n is marked failed first. Nothing happens once the delivery was
 * confirmed delivered or read, whatever the reason. Same return values as start_fallback, plus
 * {'delivered'} and {'missing'}.
 */
export const FALLBACK = script(`
local n, reason, now, err = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local st = redis.call('HGET', KEY, dfield(n, 'st'))
if not st then return { 'missing' } end
-- Confirmed delivered (a receipt can overtake a send call that then times out): nothing to do.
if RANK[st] >= RANK['delivered'] then return { 'delivered' } end
if reason ~= 'timeout' and RANK[st] < RANK['failed'] then
  redis.call('HSET', KEY, dfield(n, 'st'), 'failed', dfield(n, 'fail'), now)
  if err ~= '' then redis.call('HSET', KEY, dfield(n, 'err'), err) end
end
return start_fallback(n, reason, now)
`);

/**
 * receipt: ARGV = n, status, at (the provider's time of the status), errorCode, providerMessageId,
 * now (our clock, which decides expiry and stamps a fallback; provider clocks may drift).
 * Applies a provider receipt if it moves the delivery forward; a `failed` receipt starts the
 * fallback in the same step; a delivered/read receipt after a fallback is flagged as a double
 * send. A `failed` receipt for a delivery that is already failed returns the fallback decision
 * again (`already`/`exhausted`, nothing new is written): a receipt applied by a webhook request
 * whose follow-up (queueing the fallback's send) did not finish is answered 503, and the
 * provider's retry must be able to finish it. → {changed 0|1, deliveryStatus, late 0|1, first delivered 0|1,
 * {the delivered facts, for the first delivered only}, fallback result...}
 */
export const RECEIPT = script(`
local n, status, now, err, pid, clock = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local d = redis.call('HMGET', KEY, dfield(n, 'st'), dfield(n, 'fb'), dfield(n, 'late'), dfield(n, 'pid'))
if not d[1] then return { 0, 'missing', 0 } end
local st = d[1]
local changed = 0
if RANK[status] > RANK[st] then
  changed = 1
  redis.call('HSET', KEY, dfield(n, 'st'), status)
  if status == 'sent' or status == 'accepted' then
    redis.call('HSETNX', KEY, dfield(n, 'sent'), now)
  elseif status == 'failed' then
    redis.call('HSET', KEY, dfield(n, 'fail'), now)
    if err ~= '' then redis.call('HSET', KEY, dfield(n, 'err'), err) end
  else
    -- read implies delivered: Meta may skip the delivered status when both happen at once.
    redis.call('HSETNX', KEY, dfield(n, 'dlv'), now)
  end
end
if pid ~= '' and not d[4] then redis.call('HSET', KEY, dfield(n, 'pid'), pid) end
local late = 0
if changed == 1 and RANK[status] >= RANK['delivered'] and d[2] and d[2] ~= '0' and not d[3] then
  redis.call('HSET', KEY, dfield(n, 'late'), 1)
  late = 1
end
-- The first call that finds the delivery delivered (or read) claims it, atomically with the state
-- change: its latency, cost and stats are counted once per delivery (receipt.ts), delivered → read
-- or a provider's retry included.
local first = 0
if RANK[changed == 1 and status or st] >= RANK['delivered'] then first = redis.call('HSETNX', KEY, dfield(n, 'counted'), 1) end
local result = { changed, changed == 1 and status or st, late, first, first == 1 and delivered_facts(n) or {} }
if status == 'failed' and (changed == 1 or st == 'failed') then
  local fb = start_fallback(n, 'failed', clock)
  for _, item in ipairs(fb) do result[#result + 1] = item end
end
return result
`);

/**
 * resend: ARGV = tenant, channel ('' = the channel of the latest delivery), now, cooldownMs,
 * maxSends, lockBase ('' for an id from before destination tags). Starts a new delivery of the
 * same code, unless the destination is locked after repeated wrong codes (lockout.lua.ts). The
 * superseded delivery is marked as fallen back so its own timeout or a late failure does not
 * start yet another message.
 * → {'ok', m, channel, decoy 0|1} | {'not_found'} | {'not_pending', status} | {'cooldown', retryAfterMs}
 *   | {'locked', retryAfterMs} | {'max_sends'} | {'channel_not_allowed'}
 */
export const RESEND = script(`${LOCKOUT_PRELUDE}
local tenant, wanted, now, cooldown, maxSends, lockBase = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local v = redis.call('HMGET', KEY, 'tenant', 'status', 'expiresAt', 'sends', 'lastSendAt', 'kind', 'decoy', 'dmac')
if not v[1] or v[1] ~= tenant then return { 'not_found' } end
if v[2] ~= 'pending' or now >= tonumber(v[3]) then return { 'not_pending', v[2] == 'pending' and 'expired' or v[2] } end
if lockBase ~= '' and v[8] and v[8] ~= '' then
  local locked = redis.call('PTTL', lock_keys(lockBase, tenant, v[8]).locked)
  if locked > 0 then return { 'locked', locked } end
end
local sends, last = tonumber(v[4]), tonumber(v[5])
local wait = last + cooldown - now
if wait > 0 then return { 'cooldown', wait } end
if sends >= maxSends then return { 'max_sends' } end
local previous = redis.call('HGET', KEY, dfield(sends, 'ch'))
local channel = wanted ~= '' and wanted or previous
if (v[6] == 'email') ~= (channel == 'email') then return { 'channel_not_allowed' } end
local m = sends + 1
local why = channel ~= previous and 'user_choice' or 'resend'
redis.call('HSETNX', KEY, dfield(sends, 'fb'), m)
redis.call('HSET', KEY, 'sends', m, 'lastSendAt', now,
  dfield(m, 'ch'), channel, dfield(m, 'st'), 'queued', dfield(m, 'why'), why, dfield(m, 'q'), now)
return { 'ok', m, channel, v[7] and 1 or 0 }
`);

/** cancel: ARGV = tenant, now, retentionMs. → {'canceled'} | {'not_found'} | {'not_pending', status} */
export const CANCEL = script(`
local tenant, now, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local v = redis.call('HMGET', KEY, 'tenant', 'status', 'expiresAt')
if not v[1] or v[1] ~= tenant then return { 'not_found' } end
if v[2] ~= 'pending' or now >= tonumber(v[3]) then return { 'not_pending', v[2] == 'pending' and 'expired' or v[2] } end
finish('canceled', now, retention)
return { 'canceled' }
`);

/**
 * expire: ARGV = now, retentionMs. The verification-expiry job: ends a verification that is still
 * pending once its time is up (drops the sealed code then, not at the record's TTL).
 * → {'expired', tenant, then the ending (as CHECK's)} | {'not_pending', status} | {'not_due', msLeft} | {'missing'}
 */
export const EXPIRE = script(`
local now, retention = tonumber(ARGV[1]), ARGV[2]
local v = redis.call('HMGET', KEY, 'status', 'expiresAt', 'tenant')
if not v[1] then return { 'missing' } end
if v[1] ~= 'pending' then return { 'not_pending', v[1] } end
local expiresAt = tonumber(v[2])
if now < expiresAt then return { 'not_due', expiresAt - now } end
finish('expired', now, retention)
return { 'expired', v[3], ending() }
`);

/**
 * claim_event: ARGV = field, owner. Claims a once-per-verification callback event (e.g. the first
 * delivered receipt) for `owner`, the job that noticed it. The same owner may claim again (its
 * retry must be able to queue what a crash left unqueued); anyone else finds it taken. Nothing is
 * claimed for a verification without a callback URL.
 * → {'claimed'} | {'taken'} | {'none'}
 */
export const CLAIM_EVENT = script(`
local field, owner = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEY, 'cb') == 0 then return { 'none' } end
local current = redis.call('HGET', KEY, field)
if not current then
  redis.call('HSET', KEY, field, owner)
  return { 'claimed' }
end
return { current == owner and 'claimed' or 'taken' }
`);
