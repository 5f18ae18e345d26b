import type { Redis } from 'ioredis';

/**
 * What one key prefix costs in Redis, by kind of key. `MEMORY USAGE` of every key under the
 * prefix (Kurir's `<prefix>:…` keys and BullMQ's `{<prefix>-<queue>}…` keys), grouped by what the
 * key is for, with how many of those keys will still exist after a given horizon (no TTL, or a
 * TTL beyond it): the memory that does not go away by itself soon.
 */
export interface KeyClass {
  keys: number;
  bytes: number;
  /** Keys without a TTL, or with one longer than the horizon of the snapshot. */
  lastingKeys: number;
  lastingBytes: number;
  /** Longest remaining TTL seen (ms); -1 when some key has none. */
  maxTtlMs: number;
}

export interface PrefixSnapshot {
  at: number;
  usedMemory: number;
  keys: number;
  bytes: number;
  classes: Record<string, KeyClass>;
  /** BullMQ event streams (`<queue>:events`): length and bytes, per queue. */
  eventStreams: Record<string, { length: number; bytes: number }>;
}

export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  const match = /used_memory:(\d+)/.exec(info);
  return match === null ? Number.NaN : Number(match[1]);
}

/** Redis server CPU seconds (user + system) since it started: the whole server, whoever used it. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const user = /used_cpu_user:([\d.]+)/.exec(info);
  const sys = /used_cpu_sys:([\d.]+)/.exec(info);
  return Number(user?.[1] ?? Number.NaN) + Number(sys?.[1] ?? Number.NaN);
}

export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [nextCursor, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 2000);
    cursor = nextCursor;
    found.push(...batch);
  } while (cursor !== '0');
  return found;
}

export async function keysOfPrefix(redis: Redis, prefix: string): Promise<string[]> {
  const own = await scanKeys(redis, `${prefix}:*`);
  const queues = await scanKeys(redis, `{${prefix}-*`);
  return [...new Set([...own, ...queues])];
}

const QUEUE_INDEX = new Set([
  'wait', 'active', 'delayed', 'completed', 'failed', 'prioritized', 'paused', 'meta', 'id', 'marker',
  'stalled', 'stalled-check', 'limiter', 'pc', 'de', 'repeat', 'waiting-children', 'metrics',
]);

/** The kind of a key, e.g. `verification`, `limits:dst-24h`, `bullmq:send-whatsapp:job`. */
export function classify(prefix: string, key: string): string {
  const queuePrefix = `{${prefix}-`;
  if (key.startsWith(queuePrefix)) {
    const close = key.indexOf('}');
    const queue = key.slice(queuePrefix.length, close);
    const rest = key.slice(close + 2 + queue.length + 1); // "}:<queue>:" then the rest
    if (rest === 'events') return 'bullmq-events';
    if (QUEUE_INDEX.has(rest)) return `bullmq:${queue}:lists`;
    if (rest.endsWith(':lock')) return `bullmq:${queue}:locks`;
    if (rest.endsWith(':logs')) return `bullmq:${queue}:logs`;
    return `bullmq:${queue}:jobs`;
  }
  const rest = key.slice(prefix.length + 1);
  if (rest.startsWith('{ver_')) return 'verification';
  if (rest.startsWith('lim:')) {
    const rule = /^lim:\{[^}]*\}:([^:]+)/.exec(rest);
    return `limits:${rule?.[1] ?? '?'}${rest.endsWith(':undo') ? ':undo' : ''}`;
  }
  const head = rest.split(':')[0] ?? '';
  const names: Record<string, string> = {
    pg: 'pumping-guard',
    lock: 'lockout',
    budget: 'budget',
    pm: 'provider-message-index',
    evt: 'webhook-dedupe',
    nowa: 'no-whatsapp-cache',
  };
  return names[head] ?? `other:${head}`;
}

/** Every key of the prefix with its size and TTL; `horizonMs` decides what counts as lasting. */
export async function snapshotPrefix(redis: Redis, prefix: string, horizonMs: number): Promise<PrefixSnapshot> {
  const keys = await keysOfPrefix(redis, prefix);
  const classes: Record<string, KeyClass> = {};
  const eventStreams: PrefixSnapshot['eventStreams'] = {};
  let bytes = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    const batch = keys.slice(i, i + 1000);
    const pipeline = redis.pipeline();
    for (const key of batch) {
      pipeline.memory('USAGE', key, 'SAMPLES', '0');
      pipeline.pttl(key);
    }
    const replies = (await pipeline.exec()) ?? [];
    const streams: string[] = [];
    batch.forEach((key, j) => {
      const size = Number(replies[j * 2]?.[1] ?? 0);
      const ttl = Number(replies[j * 2 + 1]?.[1] ?? -2);
      if (ttl === -2) return; // gone between SCAN and now
      const kind = classify(prefix, key);
      if (kind === 'bullmq-events') streams.push(key);
      const entry = (classes[kind] ??= { keys: 0, bytes: 0, lastingKeys: 0, lastingBytes: 0, maxTtlMs: 0 });
      entry.keys += 1;
      entry.bytes += size;
      bytes += size;
      if (ttl === -1 || ttl > horizonMs) {
        entry.lastingKeys += 1;
        entry.lastingBytes += size;
      }
      if (ttl === -1) entry.maxTtlMs = -1;
      else if (entry.maxTtlMs !== -1 && ttl > entry.maxTtlMs) entry.maxTtlMs = ttl;
    });
    for (const stream of streams) {
      const queue = stream.slice(`{${prefix}-`.length, stream.indexOf('}'));
      const length = await redis.xlen(stream);
      const size = Number((await redis.memory('USAGE', stream, 'SAMPLES', '0')) ?? 0);
      eventStreams[queue] = { length, bytes: size };
    }
  }
  return { at: Date.now(), usedMemory: await usedMemory(redis), keys: keys.length, bytes, classes, eventStreams };
}

/** Per-class byte difference `after − before`, divided by `per` (e.g. bytes per verification). */
export function classDelta(before: PrefixSnapshot, after: PrefixSnapshot, per: number): Record<string, number> {
  const names = new Set([...Object.keys(before.classes), ...Object.keys(after.classes)]);
  const out: Record<string, number> = {};
  for (const name of [...names].sort()) {
    const delta = (after.classes[name]?.bytes ?? 0) - (before.classes[name]?.bytes ?? 0);
    if (delta !== 0) out[name] = Math.round(delta / per);
  }
  return out;
}

export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  const keys = await keysOfPrefix(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.unlink(...keys.slice(i, i + 500));
  return keys.length;
}
