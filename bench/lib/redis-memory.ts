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
  /**
   * Of the lasting BullMQ memory: unfinished jobs due to run within the horizon (delayed jobs that
   * come due, e.g. expiries) and their share of the `delayed` index. They leave within the horizon
   * when their queue drops completed jobs, and become completed jobs when it keeps them.
   */
  dueKeys: number;
  dueBytes: number;
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

/** A queue's bookkeeping: of a fixed size, or holding only what is waiting or running now. */
const QUEUE_LISTS = new Set([
  'wait', 'active', 'prioritized', 'paused', 'meta', 'id', 'marker',
  'stalled', 'stalled-check', 'limiter', 'pc', 'de', 'repeat', 'waiting-children', 'metrics',
]);
/** A queue's indexes of delayed and finished jobs: one entry per such job, as its job hash. */
const QUEUE_INDEXES = new Set(['delayed', 'completed', 'failed']);

/** The kind of a key, e.g. `verification`, `limits:dst-24h`, `bullmq:send-whatsapp:jobs`, `bullmq:send-whatsapp:index`. */
export function classify(prefix: string, key: string): string {
  const queuePrefix = `{${prefix}-`;
  if (key.startsWith(queuePrefix)) {
    const close = key.indexOf('}');
    const queue = key.slice(queuePrefix.length, close);
    const rest = key.slice(close + 2 + queue.length + 1); // "}:<queue>:" then the rest
    if (rest === 'events') return 'bullmq-events';
    if (QUEUE_LISTS.has(rest)) return `bullmq:${queue}:lists`;
    if (QUEUE_INDEXES.has(rest)) return `bullmq:${queue}:index`;
    if (rest.endsWith(':lock')) return `bullmq:${queue}:locks`;
    if (rest.endsWith(':logs')) return `bullmq:${queue}:logs`;
    return `bullmq:${queue}:jobs`;
  }
  const rest = key.slice(prefix.length + 1);
  // A destination's slot (keys.ts): its verifications and its lockout.
  const destination = /^\{d[0-9a-f]{4}\}:(ver_|lock:)/.exec(rest);
  if (destination !== null) return destination[1] === 'ver_' ? 'verification' : 'lockout';
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
    idem: 'idempotency-marker',
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
    const due = await dueShares(redis, prefix, batch, Date.now() + horizonMs);
    const streams: string[] = [];
    batch.forEach((key, j) => {
      const size = Number(replies[j * 2]?.[1] ?? 0);
      const ttl = Number(replies[j * 2 + 1]?.[1] ?? -2);
      if (ttl === -2) return; // gone between SCAN and now
      const kind = classify(prefix, key);
      if (kind === 'bullmq-events') streams.push(key);
      const entry = (classes[kind] ??= { keys: 0, bytes: 0, lastingKeys: 0, lastingBytes: 0, maxTtlMs: 0, dueKeys: 0, dueBytes: 0 });
      const share = due.get(key);
      if (share !== undefined && ttl === -1) {
        if (kind.endsWith(':jobs')) entry.dueKeys += 1;
        entry.dueBytes += Math.round(size * share);
      }
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

/**
 * For the BullMQ keys of a batch: the share of each that is due to run before `until` — 1 for an
 * unfinished job hash whose time (`timestamp` + `delay`) has come by then, the fraction of due
 * members for a `delayed` index (scored timestamp × 4096 + a counter). Other keys are absent.
 */
async function dueShares(redis: Redis, prefix: string, keys: readonly string[], until: number): Promise<Map<string, number>> {
  const shares = new Map<string, number>();
  const jobs = keys.filter((key) => /^bullmq:[^:]+:jobs$/.test(classify(prefix, key)));
  const indexes = keys.filter((key) => key.startsWith(`{${prefix}-`) && key.endsWith(':delayed'));
  if (jobs.length + indexes.length === 0) return shares;
  const pipeline = redis.pipeline();
  for (const key of jobs) pipeline.hmget(key, 'timestamp', 'delay', 'finishedOn');
  for (const key of indexes) pipeline.zcard(key).zcount(key, 0, until * 4096);
  const replies = (await pipeline.exec()) ?? [];
  jobs.forEach((key, i) => {
    const [timestamp, delay, finishedOn] = (replies[i]?.[1] ?? []) as (string | null)[];
    if (timestamp === null || timestamp === undefined || (finishedOn !== null && finishedOn !== undefined)) return;
    if (Number(timestamp) + Number(delay ?? 0) <= until) shares.set(key, 1);
  });
  indexes.forEach((key, i) => {
    const card = Number(replies[jobs.length + i * 2]?.[1] ?? 0);
    const count = Number(replies[jobs.length + i * 2 + 1]?.[1] ?? 0);
    if (card > 0) shares.set(key, count / card);
  });
  return shares;
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
