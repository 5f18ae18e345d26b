/**
 * The Lua scripts behind the SMS-pumping guard (see pumping-guard.ts for the glossary). Every key
 * of a tenant's guard shares the tenant's hash tag (as its send limits do), so each script runs
 * atomically on one slot: counting, trimming, judging and creating the quarantine (and indexing
 * it) are one step, concurrent sends from any number of API processes count exactly and create a
 * quarantine at most once, and the send gate's script (send-gate.lua.ts) does the same in the step
 * that checks the limits.
 *
 * Counts hash (`…:n`): fields `s:<minute>` (sends) and `a:<minute>` (approvals of the sends of that
 * minute), minute = floor(ms / 60000), and `m`, the matured figures last judged with (see
 * `matured`). Quarantine hash (`…:q`): `until`, `reason`, `shadow` (0|1).
 * Index (`…:idx`): sorted set of `<dimension>:<value>` by until.
 *
 * Settings as ARGV (see guardSettingsArgs): windowMs, graceMs, minSends, minConversion,
 * quarantineMs, shadow (0|1), countsTtlMs, indexMarginMs.
 */

/** Helpers shared by the scripts (Lua has no modules inside EVAL); also the send gate's. */
export const GUARD_PRELUDE = `
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

-- The settings from ARGV[first] on (8 values, in the order of the module comment).
local function guard_settings(first)
  return { window = tonumber(ARGV[first]), grace = tonumber(ARGV[first + 1]), minSends = tonumber(ARGV[first + 2]),
    minConversion = tonumber(ARGV[first + 3]), minConversionText = ARGV[first + 3],
    quarantine = tonumber(ARGV[first + 4]), shadow = ARGV[first + 5], countsTtl = ARGV[first + 6],
    indexMargin = tonumber(ARGV[first + 7]) }
end

-- A subject's quarantine as every script reads it: {until, reason, shadow}.
local function read_quarantine(key)
  return redis.call('HMGET', key, 'until', 'reason', 'shadow')
end

-- The matured sends and approvals of the window, as judging needs them. They change only when the
-- window or the maturity boundary moves to another minute, or an approval lands (which forgets
-- them, record_approvals), never with a send (the current minute is never matured): so they are
-- kept in the counts hash (field 'm': "<first>:<matureBefore>:<sends>:<approvals>") and a send
-- reads one field instead of summing every bucket of the window — which, an hour of minutes of
-- sends and approvals, is what a busy subject's send paid. Recomputing also drops stale buckets
-- and renews the hash's TTL, once per minute at least: the TTL outlives the window by more.
local function matured(counts, now, g)
  local stamp = math.floor((now - g.window) / MINUTE) .. ':' .. math.floor((now - g.grace) / MINUTE)
  local cached = redis.call('HGET', counts, 'm')
  if cached then
    local at, sends, approvals = string.match(cached, '^(.*):(%d+):(%d+)$')
    if at == stamp then return tonumber(sends), tonumber(approvals) end
  end
  local t = tally(counts, now, g.window, g.grace)
  delete_fields(counts, t.stale)
  redis.call('PEXPIRE', counts, g.countsTtl)
  redis.call('HSET', counts, 'm', stamp .. ':' .. t.maturedSends .. ':' .. t.maturedApprovals)
  return t.maturedSends, t.maturedApprovals
end

-- Counts one send of a subject, then judges the matured sends of the window.
-- q is the subject's quarantine (read_quarantine). A live quarantine is never extended (it
-- expires and is re-created, and so re-reported, if the traffic is still bad); a shadow marker is
-- upgraded when the guard now enforces. → untilMs, reason of a quarantine this call created | nil
local function record_send(counts, quarantine, q, now, g)
  redis.call('HINCRBY', counts, 's:' .. math.floor(now / MINUTE), 1)
  local maturedSends, maturedApprovals = matured(counts, now, g)

  if q[1] and tonumber(q[1]) > now and (q[3] == '0' or g.shadow == '1') then return nil end
  -- Never judge on a few sends: a handful of unverified codes is normal life, not pumping.
  if maturedSends < g.minSends then return nil end
  -- approvals / sends < minConversion, without dividing.
  if maturedApprovals >= g.minConversion * maturedSends then return nil end

  local untilMs = now + g.quarantine
  local reason = string.format('conversion %.2f < %s over %d sends in %d s',
    maturedApprovals / maturedSends, g.minConversionText, maturedSends, g.window / 1000)
  redis.call('DEL', quarantine)
  redis.call('HSET', quarantine, 'until', untilMs, 'reason', reason, 'shadow', g.shadow)
  redis.call('PEXPIRE', quarantine, g.quarantine)
  return untilMs, reason
end

-- Adds a quarantine to the tenant's operator index, drops ended ones, and keeps the key alive as
-- long as its latest quarantine (never shortening it for a shorter, later one).
local function index_add(index, member, untilMs, now, margin)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('ZADD', index, untilMs, member)
  local ttl = untilMs - now + margin
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end
`;

function script(body: string): string {
  return `${GUARD_PRELUDE}\n${body}`;
}

/**
 * record_send: KEYS = the tenant's index, then counts and quarantine of each subject. ARGV = now,
 * the 8 settings, then the index member (`<dimension>:<value>`) of each subject.
 * Counts one send for every subject and quarantines (and indexes) those whose rule trips.
 * → {subjectIndex (1-based), until, reason, shadow (0|1)} for each quarantine this call created
 */
export const RECORD_SEND = script(`
local now = tonumber(ARGV[1])
local g = guard_settings(2)
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local quarantine = KEYS[2 * i + 1]
  local untilMs, reason = record_send(KEYS[2 * i], quarantine, read_quarantine(quarantine), now, g)
  if untilMs then
    index_add(KEYS[1], ARGV[9 + i], untilMs, now, g.indexMargin)
    out[#out + 1] = i
    out[#out + 1] = untilMs
    out[#out + 1] = reason
    out[#out + 1] = tonumber(g.shadow)
  end
end
return out
`);

/**
 * record_approvals: KEYS = counts hashes of one tenant. ARGV = now, windowMs, then one triple per
 * bucket: the index of its counts key, the minute of the sends it answers, how many approvals.
 * Each approval is counted in the bucket of its send's minute, so it raises the conversion of
 * exactly the sends it answers; k approvals of one bucket count as k single ones would, one at a
 * time: never above the bucket's sends (a send recorded before the guard was on, or a replay, has
 * none; a conversion above 1 would hide pumping elsewhere in the window), and not at all once the
 * bucket left the window (it is trimmed).
 * → the number of approvals counted
 */
export const RECORD_APPROVALS = script(`
local now, windowMs = tonumber(ARGV[1]), tonumber(ARGV[2])
local oldest = math.floor((now - windowMs) / MINUTE)
local counted = 0
for i = 3, #ARGV, 3 do
  local counts, minute, k = KEYS[tonumber(ARGV[i])], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if minute >= oldest then
    local v = redis.call('HMGET', counts, 's:' .. minute, 'a:' .. minute)
    local room = tonumber(v[1] or '0') - tonumber(v[2] or '0')
    if room > 0 then
      if k > room then k = room end
      redis.call('HINCRBY', counts, 'a:' .. minute, k)
      -- The matured figures a send judges with may include this bucket: recompute them.
      redis.call('HDEL', counts, 'm')
      counted = counted + k
    end
  end
end
return counted
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
 * release: KEYS = counts, quarantine, the tenant's index. ARGV = the subject's index member.
 * Lifts a quarantine and forgets the subject's counts: the operator overruled that evidence, so
 * the next send must not re-quarantine on it; the subject is judged again only after a fresh
 * minimum volume. → 1 a quarantine (or shadow marker) existed | 0
 */
export const RELEASE = script(`
local existed = redis.call('EXISTS', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return existed
`);
