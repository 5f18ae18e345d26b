/**
 * A script's arguments in one NUL-joined argument. ioredis spends ~0.2 µs per argument of a
 * command (flattening, sizing and framing each), and the scripts on a create's path take ~50;
 * packed, the script splits them back into ARGV first ({@link UNPACK_ARGV_LUA}) and reads them
 * as before. Only for values that cannot hold a NUL (ids, MACs, numbers, validated text).
 */
export function packArgs(values: readonly (string | number)[]): string {
  for (const value of values) {
    if (typeof value === 'string' && value.includes('\0')) throw new Error('a packed script argument contains NUL');
  }
  return values.join('\0');
}

/** Lua, first in a script called with {@link packArgs}: ARGV becomes the packed values again. */
export const UNPACK_ARGV_LUA = `
do
  local i = 0
  for part in string.gmatch(ARGV[1] .. '\\0', '([^%z]*)%z') do
    i = i + 1
    ARGV[i] = part
  end
end
`;
