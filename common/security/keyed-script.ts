import type { Cluster, Redis } from 'ioredis';

/** A Lua script whose number of keys varies per call: call it with its keys and arguments. */
export type KeyedScript<R> = (keys: readonly string[], args: readonly (string | number)[]) => Promise<R>;

/**
 * Registers a Lua script that takes a varying number of keys (an ioredis command without
 * `numberOfKeys`: the count goes first) and returns a typed caller. ioredis runs it by SHA and
 * re-sends the source after a Redis restart flushed the script cache (NOSCRIPT).
 *
 * The count going first is one reason a Cluster's command connection does not auto-pipeline
 * (redis-connection.ts): ioredis files an auto-pipelined custom command under the node of its
 * first argument, which here is not a key.
 */
export function bindKeyedScript<R>(redis: Redis | Cluster, name: string, lua: string): KeyedScript<R> {
  if (!(name in redis)) redis.defineCommand(name, { lua });
  const command = (redis as unknown as Record<string, ((...args: (string | number)[]) => Promise<R>) | undefined>)[name];
  if (command === undefined) throw new Error(`script ${name} could not be registered`);
  return (keys, args) => {
    if (keys.length === 0) throw new Error(`script ${name} needs at least one key (it names the slot)`);
    return command.call(redis, keys.length, ...keys, ...args);
  };
}
