import { retentionOptions } from '../../common/jobs/queues.js';
import { QUEUES, type QueueName } from '../../common/jobs/catalogue.js';
import type { KeyClass, PrefixSnapshot } from './redis-memory.js';

/**
 * What the end-to-end verifications leave in Redis once they are over, by kind of key, and what
 * that comes to after `completions` of them (issue 6: "memory flat after 100,000 completions").
 *
 * How each kind is carried to 100k:
 * - `grows` — one entry per completion that outlives it (records, indexes, dedupe keys, …):
 *   linear. This and `jobs` are the verdict.
 * - `jobs` — BullMQ job hashes and their delayed/completed/failed indexes: linear, up to the
 *   queue's retention plateau (the most finished jobs it keeps, common/jobs/queues.ts).
 * - `window` — send-limit state (`limits:*`, the pumping guard's per-prefix/country counts): kept
 *   for its rule's window by design (24 h for `dst-24h`), per destination or per number prefix.
 *   Linear too (an upper bound for the per-prefix kinds, whose keys are O(prefixes)), shown apart
 *   and not in the verdict: it is the limits' own state, not something the completions leave behind.
 * - `fixed` — per queue or per tenant bookkeeping (queue meta and counters, stats buckets, budget
 *   counters): its size does not depend on how many verifications completed; not scaled.
 * BullMQ's event streams are capped by length (EVENT_STREAM_MAX_LEN) and reported apart.
 */
export type ResidualGroup = 'grows' | 'jobs' | 'window' | 'fixed';

export interface ResidualKind {
  group: ResidualGroup;
  keys: number;
  bytesPerCompletion: number;
  projectedBytes: number;
  /** Longest TTL seen (ms); -1 = some key has none. */
  lastsMs: number;
}

export interface ResidualReport {
  completions: number;
  /** True when measured after the records' ttl + retention; else projected from TTLs and due times. */
  measured: boolean;
  byKind: Record<string, ResidualKind>;
  /** Projected at `target` completions, by group. */
  projected: Record<ResidualGroup, number>;
  /** What the verdict counts: `grows` + `jobs`. */
  verdictBytes: number;
  eventStreamBytes: number;
}

const WINDOW_KINDS = /^(limits:|pumping-guard$)/;
const FIXED_KINDS = /^(bullmq:[^:]+:lists|budget|other:stats)$/;
const QUEUE_NAMES = new Set<string>(Object.values(QUEUES));

function queueOf(kind: string): QueueName | undefined {
  const name = /^bullmq:([^:]+):(jobs|index)$/.exec(kind)?.[1];
  return name !== undefined && QUEUE_NAMES.has(name) ? (name as QueueName) : undefined;
}

function groupOf(kind: string): ResidualGroup {
  if (WINDOW_KINDS.test(kind)) return 'window';
  if (FIXED_KINDS.test(kind)) return 'fixed';
  return queueOf(kind) === undefined ? 'grows' : 'jobs';
}

/** The most finished jobs the queue keeps (completed or failed), whatever their age. */
function plateau(queue: QueueName): number {
  const { removeOnComplete, removeOnFail } = retentionOptions(queue);
  const count = (keep: typeof removeOnComplete) => (keep.count === undefined || keep.count < 0 ? Number.POSITIVE_INFINITY : keep.count);
  return Math.max(count(removeOnComplete), count(removeOnFail));
}

/**
 * @param snapshot taken after ttl + retention (`measured`), or at the end of the phase with a
 *   horizon of ttl + retention: then a kind's lasting part is what outlives the horizon by TTL,
 *   less BullMQ jobs due to run by then in a queue that drops its completed jobs.
 */
export function residualReport(snapshot: PrefixSnapshot, completions: number, measured: boolean, target: number): ResidualReport {
  const n = Math.max(1, completions);
  const scale = target / n;
  const lasting = (kind: string, c: KeyClass) => {
    if (measured) return { bytes: c.bytes, keys: c.keys };
    const queue = queueOf(kind);
    const leaves = queue !== undefined && retentionOptions(queue).removeOnComplete.count === 0;
    return leaves ? { bytes: c.lastingBytes - c.dueBytes, keys: c.lastingKeys - c.dueKeys } : { bytes: c.lastingBytes, keys: c.lastingKeys };
  };
  const jobsLeft = (queue: QueueName) => {
    const c = snapshot.classes[`bullmq:${queue}:jobs`];
    return c === undefined ? 0 : lasting(`bullmq:${queue}:jobs`, c).keys;
  };
  const byKind: Record<string, ResidualKind> = {};
  const projected: Record<ResidualGroup, number> = { grows: 0, jobs: 0, window: 0, fixed: 0 };
  for (const [kind, c] of Object.entries(snapshot.classes)) {
    if (kind === 'bullmq-events') continue;
    const kept = lasting(kind, c);
    if (kept.bytes <= 0) continue;
    const group = groupOf(kind);
    const queue = queueOf(kind);
    const jobs = queue === undefined ? 0 : jobsLeft(queue);
    const factor = group === 'fixed' ? 1 : queue === undefined || jobs === 0 ? scale : Math.min(scale, plateau(queue) / jobs);
    const bytes = kept.bytes * factor;
    projected[group] += bytes;
    byKind[kind] = { group, keys: kept.keys, bytesPerCompletion: Math.round((kept.bytes / n) * 10) / 10, projectedBytes: Math.round(bytes), lastsMs: c.maxTtlMs };
  }
  for (const group of Object.keys(projected) as ResidualGroup[]) projected[group] = Math.round(projected[group]);
  return {
    completions,
    measured,
    byKind,
    projected,
    verdictBytes: projected.grows + projected.jobs,
    eventStreamBytes: Object.values(snapshot.eventStreams).reduce((a, st) => a + st.bytes, 0),
  };
}
