/**
 * The Lua scripts behind the SMS-pumping guard (see pumping-guard.ts for the glossary). Each script
 * runs atomically on the keys of one (tenant, subject), which share one hash tag, so counting,
 * trimming, judging and creating the quarantine are one step on one slot: concurrent sends from
 * any number of API processes count exactly and create a quarantine at most once.
 *
 * Counts hash (`…:n`): fields `s:<minute>` (sends) and `a:<minute>` (approvals of the sends of that
 * minute), minute = floor(ms / 60000). Quarantine hash (`…:q`): `until`, `reason`, `shadow` (0|1).
 */

/** Helpers shared by the scripts (Lua has no modules inside EVAL). */
const PRELUDE = `
local MINUTE = 60000

-- Sums the buckets of the counts hash that overlap the window and lists the older ones (stale).
-- A bucket is matured once its whole minute is older than the grace: its users have had the
-- time to type the code, so a missing approval there is evidence, while younger ones are not.
local function tally(key, now, windowMs, graceMs)
  local first = math.floor((now - windowMs) / MINUTE)
  local matureBefore = math.floor((now - graceMs) / MINUTE)
  local t = { sends = 0, approvals = 0, maturedSends = 0, maturedApprovals = 0, stale = {} }
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local kind, minute = string.match(flat[i], '^([sa]):(%d+)$')
    if kind then
      minute = tonumber(minute)
      local n = tonumber(flat[i + 1])
      if minute < first then
        t.stale[#t.stale + 1] = flat[i]
      elseif kind == 's' then
        t.sends = t.sends + n
        if minute < matureBefore then t.maturedSends = t.maturedSends + n end
      else
        t.approvals = t.approvals + n
        if minute < matureBefore then t.maturedApprovals = t.maturedApprovals + n end
      end
    end
  end
  return t
end

-- HDEL in chunks: unpack() of a long list would overflow Lua's C stack.
local function delete_fields(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end
`;

function script(body: string): string {
  return `${PRELUDE}\n${body}`;
}

/**
 * record_send: KEYS = counts, quarantine. ARGV = now, windowMs, graceMs, minSends, minConversion,
 * quarantineMs, shadow (0|1), countsTtlMs.
 * Counts one send, drops stale buckets, then judges the matured sends of the window. A live
 * quarantine is never extended (it expires and is re-created, and so re-reported, if the traffic
 * is still bad); a shadow marker is upgraded when the guard now enforces.
 * → {1, until, reason, shadow} for a quarantine this call created | {0}
 */
export const RECORD_SEND = script(`
local COUNTS, QUARANTINE = KEYS[1], KEYS[2]
local now, windowMs, graceMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local minSends, minConversion, quarantineMs, shadow = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
redis.call('HINCRBY', COUNTS, 's:' .. math.floor(now / MINUTE), 1)
local t = tally(COUNTS, now, windowMs, graceMs)
delete_fields(COUNTS, t.stale)
redis.call('PEXPIRE', COUNTS, ARGV[8])

local q = redis.call('HMGET', QUARANTINE, 'until', 'shadow')
if q[1] and tonumber(q[1]) > now and (q[2] == '0' or shadow == '1') then return { 0 } end
-- Never judge on a few sends: a handful of unverified codes is normal life, not pumping.
if t.maturedSends < minSends then return { 0 } end
-- approvals / sends < minConversion, without dividing.
if t.maturedApprovals >= minConversion * t.maturedSends then return { 0 } end

local untilMs = now + quarantineMs
local reason = string.format('conversion %.2f < %s over %d sends in %d s',
  t.maturedApprovals / t.maturedSends, ARGV[5], t.maturedSends, windowMs / 1000)
redis.call('DEL', QUARANTINE)
redis.call('HSET', QUARANTINE, 'until', untilMs, 'reason', reason, 'shadow', shadow)
redis.call('PEXPIRE', QUARANTINE, quarantineMs)
return { 1, untilMs, reason, tonumber(shadow) }
`);

/**
 * record_approval: KEYS = counts. ARGV = sentAt, now, windowMs.
 * Counts an approval in the bucket of its send's minute, so it raises the conversion of exactly
 * the sends it answers. Ignored when that bucket left the window (it is trimmed) or when the
 * bucket has no unanswered send (a send recorded before the guard was on, or a replay): a
 * conversion above 1 would hide pumping elsewhere in the window.
 * → 1 counted | 0 ignored
 */
export const RECORD_APPROVAL = script(`
local COUNTS = KEYS[1]
local sentAt, now, windowMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local minute = math.floor(sentAt / MINUTE)
if minute < math.floor((now - windowMs) / MINUTE) then return 0 end
local v = redis.call('HMGET', COUNTS, 's:' .. minute, 'a:' .. minute)
if tonumber(v[2] or '0') >= tonumber(v[1] or '0') then return 0 end
redis.call('HINCRBY', COUNTS, 'a:' .. minute, 1)
return 1
`);

/**
 * stats: KEYS = counts. ARGV = now, windowMs, graceMs. Read-only: the same tally the judgement
 * uses, so what an operator sees is what the rule saw.
 * → {sends, approvals, maturedSends, maturedApprovals}
 */
export const STATS = script(`
local t = tally(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return { t.sends, t.approvals, t.maturedSends, t.maturedApprovals }
`);

/**
 * release: KEYS = counts, quarantine. Lifts a quarantine and forgets the subject's counts: the
 * operator overruled that evidence, so the next send must not re-quarantine on it; the subject is
 * judged again only after a fresh minimum volume. → 1 a quarantine (or shadow marker) existed | 0
 */
export const RELEASE = script(`
local existed = redis.call('EXISTS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return existed
`);

/**
 * index: KEYS = the tenant's quarantine index. ARGV = member, until, now, marginMs.
 * Adds a quarantine to the operator index, drops ended ones, and keeps the key alive as long as
 * its latest quarantine (never shortening it for a shorter, later one).
 */
export const INDEX = `
local member, untilMs, now, margin = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], untilMs, member)
local ttl = untilMs - now + margin
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`;
