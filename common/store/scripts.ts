import type { Cluster, Redis } from 'ioredis';

/** A Lua script bound to a connection: call it with its keys and arguments. */
export type BoundScript<R> = (keys: readonly string[], args: readonly (string | number)[]) => Promise<R>;

/**
 * Registers a Lua script on a connection once (ioredis then runs it by SHA and re-sends the
 * source after a Redis restart flushed the script cache) and returns a typed caller.
 */
export function bindScript<R>(redis: Redis | Cluster, name: string, numberOfKeys: number, lua: string): BoundScript<R> {
  if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua });
  const command = (redis as unknown as Record<string, (...args: (string | number)[]) => Promise<R>>)[name];
  if (command === undefined) throw new Error(`script ${name} could not be registered`);
  return (keys, args) => {
    if (keys.length !== numberOfKeys) throw new Error(`script ${name} takes ${numberOfKeys} keys, got ${keys.length}`);
    return command.call(redis, ...keys, ...args);
  };
}
