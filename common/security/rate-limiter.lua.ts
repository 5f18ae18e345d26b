/**
 * The Lua scripts behind the send limiter (rate-limiter.ts). One call checks and records every
 * rule of one send in a single atomic step, which is what makes "all or nothing" and "exactly
 * `limit` allowed under any concurrency" hold across any number of API processes.
 *
 * Layout, per rule (all keys of one call share one hash tag, so one script touches one slot):
 * - `window`, `backoff`: a sorted set `key` of eventId → event time (ms). Only allowed events are
 *   added, so it never holds more than `limit` live entries.
 * - `distinct`: a sorted set `key` of member → latest time seen, plus a hash `<key>:undo` of
 *   member → `<previous score>|<eventId>` so `release` can put back exactly what one event changed.
 *
 * A live entry is one with score > now − windowMs: an event at t leaves the window at exactly
 * t + windowMs, the moment the same event is trimmed. Scores are integers below 1e14 (epoch ms),
 * which Lua's number-to-string conversion (%.14g) renders exactly.
 *
 * ARGV = now, eventId, then 5 fields per rule: kind, limit (backoff: baseMs), windowMs,
 * maxMs (0 unless backoff), member ('' unless distinct). KEYS = the rule keys in rule order, each
 * `distinct` key followed by its undo hash.
 *
 * The prelude is exported for the send gate's script (send-gate.lua.ts), which checks and records
 * the same rules in the same step as the gate's other checks: its ARGV also start with now and
 * eventId, and its rules are the last keys and arguments, where `parse_rules` is told they start.
 */

export const LIMITER_PRELUDE = `
local NOW = tonumber(ARGV[1])
local EVENT = ARGV[2]

-- The rules from KEYS[first_key] and ARGV[first_arg] to the end of ARGV.
local function parse_rules(first_key, first_arg)
  local rules, k = {}, first_key
  for i = first_arg, #ARGV, 5 do
    local r = { kind = ARGV[i], limit = tonumber(ARGV[i + 1]), window = tonumber(ARGV[i + 2]),
      max = tonumber(ARGV[i + 3]), member = ARGV[i + 4], key = KEYS[k] }
    k = k + 1
    if r.kind == 'distinct' then
      r.undo = KEYS[k]
      k = k + 1
    end
    r.floor = '(' .. (NOW - r.window)
    rules[#rules + 1] = r
  end
  return rules
end

-- Score of the rank-th oldest live entry (0-based), or nil.
local function live_at(r, rank)
  local e = redis.call('ZRANGEBYSCORE', r.key, r.floor, '+inf', 'WITHSCORES', 'LIMIT', rank, 1)
  if e[2] then return tonumber(e[2]) end
  return nil
end

local function live_count(r)
  return redis.call('ZCOUNT', r.key, r.floor, '+inf')
end

-- window / distinct with 'used' live entries → wait (0 = allowed now), resetAt (-1 = none, or
-- not asked for: a consume needs only the wait, and reading the reset costs a range query).
-- One more event fits once the (used - limit + 1) oldest have left, which is the oldest one
-- unless the limit was lowered below what is already recorded.
local function counted(r, used, with_reset)
  if r.limit == 0 then
    -- Never allowed: report the whole window so a client backs off for a real period.
    if not with_reset then return r.window, -1 end
    local newest = redis.call('ZREVRANGEBYSCORE', r.key, '+inf', r.floor, 'WITHSCORES', 'LIMIT', 0, 1)
    return r.window, newest[2] and (tonumber(newest[2]) + r.window) or -1
  end
  if used < r.limit then
    if not with_reset then return 0, -1 end
    local oldest = live_at(r, 0)
    return 0, oldest and (oldest + r.window) or -1
  end
  local frees = live_at(r, used - r.limit) + r.window
  return frees - NOW, frees
end

local function gap(r, k)
  local g = r.limit * 2 ^ (k - 2)
  if g > r.max then g = r.max end
  return g
end

-- backoff → used, wait, resetAt. The next event is the (n+1)-th of the window, but events
-- leave the window while the client waits and each one that leaves shortens the gap, so walk
-- the stretches between departures and take the first moment past the gap that applies then.
local function backoff(r)
  local e = redis.call('ZRANGEBYSCORE', r.key, r.floor, '+inf', 'WITHSCORES')
  local n = #e / 2
  if n == 0 then return 0, 0, -1 end
  local last = tonumber(e[2 * n])
  local from = NOW
  for j = 0, n - 1 do
    local leaves = tonumber(e[2 * (j + 1)]) + r.window
    local t = last + gap(r, n - j + 1)
    if t < from then t = from end
    if t < leaves then
      -- Not waiting: the next change worth reporting is the window emptying (cooldown back to base).
      if t == NOW then return n, 0, last + r.window end
      return n, t - NOW, t
    end
    from = leaves
  end
  return n, from - NOW, from
end

-- Every live member of a distinct rule is in the window; the member itself is always allowed.
local function member_live(r)
  local s = redis.call('ZSCORE', r.key, r.member)
  return s and tonumber(s) > NOW - r.window
end

-- → used, wait, resetAt for one rule, as of NOW (reads only; resetAt only with_reset).
local function evaluate(r, with_reset)
  if r.kind == 'backoff' then return backoff(r) end
  local used = live_count(r)
  if r.kind == 'distinct' and r.limit > 0 and member_live(r) then
    if not with_reset then return used, 0, -1 end
    local oldest = live_at(r, 0)
    return used, 0, oldest + r.window
  end
  local wait, reset = counted(r, used, with_reset)
  return used, wait, reset
end

local function hdel_all(key, fields)
  -- unpack() is bounded by Lua's C stack; batches keep a large trim from failing.
  for i = 1, #fields, 500 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 499, #fields)))
  end
end

local function trim(r)
  local cutoff = NOW - r.window
  if r.kind == 'distinct' then
    local gone = redis.call('ZRANGEBYSCORE', r.key, '-inf', cutoff)
    if #gone > 0 then
      redis.call('ZREMRANGEBYSCORE', r.key, '-inf', cutoff)
      hdel_all(r.undo, gone)
    end
  else
    redis.call('ZREMRANGEBYSCORE', r.key, '-inf', cutoff)
  end
end

-- Trims every rule and checks it at NOW, recording nothing. A replay (the eventId already live in
-- every window/backoff rule) is allowed and must record nothing; a rule that already holds the
-- eventId is neither checked nor counted again.
-- → 'allowed' | 'replay' | 'refused', ruleIndex (1-based), retryAfterMs (the longest wait)
local function check_rules(rules)
  local ided, seen = 0, 0
  for _, r in ipairs(rules) do
    trim(r)
    if r.kind ~= 'distinct' then
      ided = ided + 1
      if redis.call('ZSCORE', r.key, EVENT) then
        r.seen = true
        seen = seen + 1
      end
    end
  end
  if ided > 0 and seen == ided then return 'replay' end

  -- Check everything before writing anything: a refusal must leave every rule as it was.
  local worst, worst_wait = 0, 0
  for i, r in ipairs(rules) do
    if not r.seen then
      local _, wait = evaluate(r, false)
      if wait > worst_wait then worst, worst_wait = i, wait end
    end
  end
  if worst > 0 then return 'refused', worst, worst_wait end
  return 'allowed'
end

-- Records the event in every rule that check_rules found allowing it.
local function record_rules(rules)
  for _, r in ipairs(rules) do
    if r.kind == 'distinct' then
      local prev = redis.call('ZSCORE', r.key, r.member)
      local undo = redis.call('HGET', r.undo, r.member)
      -- A retried event keeps its first undo record, so release still restores the state before it.
      if not undo or string.sub(undo, string.find(undo, '|', 1, true) + 1) ~= EVENT then
        redis.call('HSET', r.undo, r.member, (prev or '') .. '|' .. EVENT)
      end
      -- Keep the latest sighting: another process's clock may be slightly ahead of ours.
      if not prev or tonumber(prev) < NOW then redis.call('ZADD', r.key, ARGV[1], r.member) end
      redis.call('PEXPIRE', r.key, r.window)
      redis.call('PEXPIRE', r.undo, r.window)
    elseif not r.seen then
      redis.call('ZADD', r.key, ARGV[1], EVENT)
      redis.call('PEXPIRE', r.key, r.window)
    end
  end
end
`;

function script(body: string): string {
  return `${LIMITER_PRELUDE}\n${body}`;
}

/**
 * consume → {1} allowed | {0, ruleIndex (1-based), retryAfterMs}.
 * A replay (the eventId already live in every window/backoff rule) answers allowed and writes
 * nothing; a rule that already holds the eventId is neither checked nor counted again.
 */
export const CONSUME = script(`
local rules = parse_rules(1, 3)
local verdict, worst, wait = check_rules(rules)
if verdict == 'refused' then return { 0, worst, wait } end
if verdict == 'allowed' then record_rules(rules) end
return { 1 }
`);

/**
 * peek → 3 numbers per rule: used, retryAfterMs, resetAt (-1 = nothing recorded).
 * Reads only: expired entries are skipped by score range instead of trimmed.
 */
export const PEEK = script(`
local out = {}
for _, r in ipairs(parse_rules(1, 3)) do
  local used, wait, reset = evaluate(r, true)
  out[#out + 1] = used
  out[#out + 1] = wait
  out[#out + 1] = reset
end
return out
`);

/**
 * release: ARGV as for consume (now unused). Removes the eventId from window/backoff rules and
 * undoes its change to each distinct rule, unless a later event touched that member since (then
 * the later event holds the member in the window anyway). → number of rules changed.
 */
export const RELEASE = script(`
local changed = 0
for _, r in ipairs(parse_rules(1, 3)) do
  if r.kind == 'distinct' then
    local undo = redis.call('HGET', r.undo, r.member)
    if undo then
      local bar = string.find(undo, '|', 1, true)
      if string.sub(undo, bar + 1) == EVENT then
        local prev = string.sub(undo, 1, bar - 1)
        if prev == '' then
          redis.call('ZREM', r.key, r.member)
        else
          redis.call('ZADD', r.key, 'XX', prev, r.member)
        end
        redis.call('HDEL', r.undo, r.member)
        changed = changed + 1
      end
    end
  else
    changed = changed + redis.call('ZREM', r.key, EVENT)
  end
end
return changed
`);
