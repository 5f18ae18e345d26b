/**
 * One event's `/v1/stats` changes as a script's key and arguments (stats.store.ts builds them):
 * the tenant's hash of the hour, then its EXPIREAT (unix seconds) and field, amount pairs.
 *
 * The hash carries the tenant's hash tag, as the send limits and the pumping guard do, so a script
 * of theirs can apply the write in the same step as its own (with {@link STATS_WRITE_LUA}) and
 * the event costs no command of its own.
 */
export interface StatsWrite {
  key: string;
  args: (string | number)[];
}

/** Lua: `apply_stats(key, first)` applies a {@link StatsWrite} whose args are ARGV[first..#ARGV]. */
export const STATS_WRITE_LUA = `
local function apply_stats(key, first)
  for i = first + 1, #ARGV, 2 do redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1]) end
  redis.call('EXPIREAT', key, ARGV[first])
end
`;
