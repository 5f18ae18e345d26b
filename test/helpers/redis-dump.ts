import type { Redis } from 'ioredis';
import { keysOf } from './redis.js';

/** Every key name and every stored value under a prefix, as text, whatever the Redis type. */
export async function dumpPrefix(redis: Redis, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const key of await keysOf(redis, prefix)) {
    out.push(key);
    const type = await redis.type(key);
    switch (type) {
      case 'string':
        out.push((await redis.get(key)) ?? '');
        break;
      case 'hash':
        out.push(...Object.entries(await redis.hgetall(key)).flat());
        break;
      case 'list':
        out.push(...(await redis.lrange(key, 0, -1)));
        break;
      case 'set':
        out.push(...(await redis.smembers(key)));
        break;
      case 'zset':
        out.push(...(await redis.zrange(key, 0, -1, 'WITHSCORES')));
        break;
      case 'stream':
        for (const [id, fields] of await redis.xrange(key, '-', '+')) out.push(id, ...fields);
        break;
      default:
        break;
    }
  }
  return out;
}

/** Does `code` occur in `text` as a number of its own (not inside a longer run of letters/digits)? */
export function containsCode(text: string, code: string): boolean {
  return new RegExp(`(?<![0-9A-Za-z])${code}(?![0-9A-Za-z])`).test(text);
}
