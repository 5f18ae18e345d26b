import type { Logger } from 'pino';
import type { QueueName } from '../jobs/catalogue.js';
import type { JobQueues } from '../jobs/queues.js';
import type { Metrics } from '../observability/metrics.js';
import type { KeySpace } from '../store/keys.js';
import type { RedisClient } from '../store/verification.store.js';

/**
 * The queue watchdog: jobs that are ready but nobody picks up are the failure BullMQ cannot
 * report itself (a worker stuck on a dead blocking connection, a queue no process serves). Every
 * sample it records queue depths as gauges and, per queue, the age of the oldest job ready to
 * run; past the threshold it counts an alarm and writes a verdict that `/readyz` reads.
 */
export interface WatchdogVerdict {
  checkedAt: number;
  stalled: { queue: QueueName; oldestReadySeconds: number }[];
}

const STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed'] as const;

export function watchdogKey(keys: KeySpace): string {
  return `${keys.prefix}:watchdog`;
}

/** Reads the last verdict; `undefined` when no scheduler has written one recently. */
export async function readWatchdog(redis: RedisClient, keys: KeySpace): Promise<WatchdogVerdict | undefined> {
  const raw = await redis.get(watchdogKey(keys));
  if (raw === null) return undefined;
  try {
    return JSON.parse(raw) as WatchdogVerdict;
  } catch {
    return undefined;
  }
}

/** When the oldest ready job of a queue became ready (delayed jobs become ready at timestamp + delay). */
async function oldestReadySince(queues: JobQueues, name: QueueName): Promise<number | undefined> {
  // Ascending: the first job of the wait list is the one that has waited longest.
  const [job] = await queues.queue(name).getJobs(['wait'], 0, 0, true);
  if (job === undefined) return undefined;
  return job.timestamp + (job.opts.delay ?? 0);
}

export async function sampleQueues(
  deps: { queues: JobQueues; metrics: Metrics; redis: RedisClient; keys: KeySpace; logger: Logger; now: () => number },
  options: { queueNames: readonly QueueName[]; stallAfterMs: number; verdictTtlMs: number },
): Promise<WatchdogVerdict> {
  const now = deps.now();
  const stalled: WatchdogVerdict['stalled'] = [];
  for (const name of options.queueNames) {
    const counts = await deps.queues.queue(name).getJobCounts(...STATES);
    for (const state of STATES) deps.metrics.queueJobs.set({ queue: name, state }, counts[state] ?? 0);
    const since = await oldestReadySince(deps.queues, name);
    const age = since === undefined ? 0 : Math.max(0, now - since);
    deps.metrics.queueOldestReady.set({ queue: name }, age / 1000);
    if (age > options.stallAfterMs) {
      stalled.push({ queue: name, oldestReadySeconds: Math.round(age / 1000) });
      deps.metrics.watchdogAlarms.inc({ queue: name });
      deps.logger.error({ queue: name, oldestReadySeconds: Math.round(age / 1000), waiting: counts.waiting }, 'watchdog: jobs wait but nothing processes them');
    }
  }
  const verdict: WatchdogVerdict = { checkedAt: now, stalled };
  await deps.redis.set(watchdogKey(deps.keys), JSON.stringify(verdict), 'PX', options.verdictTtlMs);
  return verdict;
}

/** Samples every `intervalMs` until stopped; a failed sample is logged and retried next tick. */
export function startWatchdog(
  deps: Parameters<typeof sampleQueues>[0],
  options: Parameters<typeof sampleQueues>[1] & { intervalMs: number },
): { stop(): void } {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    sampleQueues(deps, options)
      .catch((error: unknown) => deps.logger.warn({ err: error }, 'watchdog sample failed'))
      .finally(() => {
        running = false;
      });
  }, options.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
