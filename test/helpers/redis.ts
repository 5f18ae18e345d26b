import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/** The real Redis every integration and end-to-end test uses (CI starts it on 127.0.0.1:6379). */
export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A key prefix no other test (or a developer's `npm start`) shares. */
export function freshPrefix(label = 't'): string {
  return `kt-${label}-${randomBytes(5).toString('hex')}`;
}

/** Every key a prefix owns: verification/index keys (`<prefix>:…`) and BullMQ queues (`{<prefix>-…}…`). */
export async function keysOf(redis: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for (const pattern of [`${prefix}:*`, `{${prefix}-*`]) {
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
  }
  return found;
}

export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysOf(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

/**
 * Runs `body` with a connection and a fresh prefix, and removes everything under the prefix
 * afterwards, whether the body passed or failed.
 */
export async function withRedisPrefix<T>(label: string, body: (redis: Redis, prefix: string) => Promise<T>): Promise<T> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  const prefix = freshPrefix(label);
  try {
    return await body(redis, prefix);
  } finally {
    await deletePrefix(redis, prefix).catch(() => undefined);
    await redis.quit();
  }
}
