import { UNPACK_ARGV_LUA } from '../store/packed-args.js';
import { GUARD_PRELUDE } from './pumping-guard.lua.js';
import { LIMITER_PRELUDE } from './rate-limiter.lua.js';

/**
 * admit: the send gate's decision in one atomic step on the tenant's slot (send-gate.ts): a
 * reused Idempotency-Key, the destination's no-WhatsApp hint, the pumping quarantine, the daily
 * budget, the send limits and the guard's count of the send, with the limiter's and the guard's
 * own Lua (their preludes) so each rule means exactly what it means in their scripts. Everything
 * it reads or writes carries the tenant's hash tag (tenant-slot.ts), so it runs unchanged on one
 * Redis or a Cluster. (The destination's lockout lives with its verifications, and the store's
 * create script refuses a locked one: verification.lua.ts.)
 *
 * KEYS = [the Idempotency-Key's marker] (only with a key), [the destination's no-WhatsApp hint]
 *        (only with the hint check), [the guard's index, then counts and quarantine of each
 *        subject] (only with subjects), [the budget counter] (only with a budget check), then the
 *        rule keys (rate-limiter.lua.ts).
 * ARGV (packed, packed-args.ts: ~50 of them) = now, eventId, subject count S, budget limit (-1: no
 *        check), hint check (0|1), the request's fingerprint ('' without a key), the marker's TTL
 *        in ms, the guard's 8 settings (pumping-guard.lua.ts; ignored without subjects), S index
 *        members, then 5 per rule.
 *
 * An Idempotency-Key names one verification id per destination (keys.ts), so its marker — the
 * fingerprint of the request that first used it — is what tells a retry from a reuse with
 * another body, another destination included. It is written once the send is admitted.
 *
 * Order: cheapest and most final first, the writes last, so a refused send leaves the limits as
 * they were (a send that trips a quarantine is counted by the guard, as any judged send is).
 * → {'idempotency_conflict'}                      the key was used with another request
 *   | {'no_whatsapp'}                              the hint is set: the caller plans without
 *                                                  WhatsApp and asks again (nothing was written)
 *   | {'quarantine', subjectIndex, until, reason}   a quarantine in force refuses
 *   | {'budget'}                                   the day's budget is spent
 *   | {'limit', ruleIndex, retryAfterMs}            a send limit refuses
 *   | {'admit' | 'tripped', shadowSubjectIndex (0: none), shadowReason,
 *      then subjectIndex, until, reason, shadow for each quarantine this send created}
 *     'tripped': one of those is enforced, so the send is refused and the limits are not recorded.
 */
export const ADMIT = `${UNPACK_ARGV_LUA}
${LIMITER_PRELUDE}
${GUARD_PRELUDE}
local S, budgetLimit, hintCheck, fingerprint = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6]

local k = 1
local marker
if fingerprint ~= '' then
  marker = KEYS[1]
  local held = redis.call('GET', marker)
  if held and held ~= fingerprint then return { 'idempotency_conflict' } end
  k = 2
end
if hintCheck then
  if redis.call('EXISTS', KEYS[k]) == 1 then return { 'no_whatsapp' } end
  k = k + 1
end

local g = guard_settings(8)
local index
if S > 0 then
  index = KEYS[k]
  k = k + 1
end
local subjects = {}
for i = 1, S do
  subjects[i] = { counts = KEYS[k], quarantine = KEYS[k + 1], member = ARGV[15 + i] }
  k = k + 2
end
local budget
if budgetLimit >= 0 then
  budget = KEYS[k]
  k = k + 1
end
local rules = parse_rules(k, 16 + S)

-- A quarantine in force refuses. A shadow marker never refuses, even once the mode is enforce (it
-- was never meant to; the next recorded send upgrades it if the traffic is still bad), and in
-- shadow mode nothing does: those are only reported, the first one seen.
local shadowSeen, shadowReason = 0, ''
for i, s in ipairs(subjects) do
  s.q = read_quarantine(s.quarantine)
  if s.q[1] and tonumber(s.q[1]) > NOW then
    if g.shadow ~= '1' and s.q[3] ~= '1' then return { 'quarantine', i, s.q[1], s.q[2] or '' } end
    if shadowSeen == 0 then shadowSeen, shadowReason = i, s.q[2] or '' end
  end
end

if budget and tonumber(redis.call('GET', budget) or '0') >= budgetLimit then return { 'budget' } end

local verdict, worst, wait = check_rules(rules)
if verdict == 'refused' then return { 'limit', worst, wait } end

-- Count the send for the guard before admitting it, so that the send which trips the quarantine
-- is itself refused instead of being the last one a pumper gets through.
local out = { 'admit', shadowSeen, shadowReason }
for i, s in ipairs(subjects) do
  local untilMs, reason = record_send(s.counts, s.quarantine, s.q, NOW, g)
  if untilMs then
    index_add(index, s.member, untilMs, NOW, g.indexMargin)
    out[#out + 1] = i
    out[#out + 1] = untilMs
    out[#out + 1] = reason
    out[#out + 1] = tonumber(g.shadow)
    if g.shadow ~= '1' then out[1] = 'tripped' end
  end
end
if out[1] == 'admit' then
  if verdict == 'allowed' then record_rules(rules) end
  if marker then redis.call('SET', marker, fingerprint, 'PX', ARGV[7]) end
end
return out
`;
