import type { Redis } from 'ioredis';
import type { KurirSettings } from './kurir.js';
import { selfCpuSeconds, type BenchProcess } from './processes.js';
import { redisCpuSeconds } from './redis-memory.js';

/** How long and how often each figure is measured (`--quick` shortens everything). */
export interface Mode {
  name: 'default' | 'quick';
  /** Runs per figure; the table shows their median. */
  runs: number;
  /** In-flight requests of the closed-loop figures (create, check, bare express). */
  connections: number;
  closedSeconds: number;
  warmupSeconds: number;
  bullmqJobs: number;
  /** Length of one step of the end-to-end rate ladder. */
  stepSeconds: number;
  /** Verifications of the capacity probe that places the ladder. */
  probeCount: number;
  e2eRuns: number;
  splitRuns: number;
  fallbackRuns: number;
  fallbackCount: number;
  /** Highest arrival rate of the `…1002` creates of the fallback figure. */
  fallbackRate: number;
  /** Lowest one (quick runs trade some load for time). */
  fallbackMinRate: number;
  memoryBatches: number;
  memoryBatchSize: number;
  split: boolean;
}

export const MODES: Record<Mode['name'], Mode> = {
  default: {
    name: 'default',
    runs: 3,
    connections: 32,
    closedSeconds: 3,
    // The first measured run after a 1 s warm-up was the lowest of three in every recorded run
    // (A, C, D, E: 0.6–0.8 × the others): the API's code paths are still being optimised by V8,
    // where the bare handler's few functions are hot at once.
    warmupSeconds: 3,
    // About as long as one end-to-end step (3 s at ~10,000 jobs/s), which it is the baseline of:
    // 6,000 jobs (≈ 0.5 s) swung 8,500–17,000 jobs/s within one run (E, F), a burst against a
    // sustained figure.
    bullmqJobs: 30_000,
    stepSeconds: 3,
    probeCount: 600,
    e2eRuns: 3,
    splitRuns: 3,
    fallbackRuns: 3,
    fallbackCount: 1000,
    fallbackRate: 400,
    fallbackMinRate: 50,
    memoryBatches: 3,
    memoryBatchSize: 500,
    split: true,
  },
  quick: {
    name: 'quick',
    runs: 3,
    connections: 32,
    closedSeconds: 1,
    warmupSeconds: 0.5,
    bullmqJobs: 10_000,
    stepSeconds: 2.5,
    probeCount: 300,
    e2eRuns: 1,
    splitRuns: 0,
    fallbackRuns: 1,
    fallbackCount: 1000,
    fallbackRate: 400,
    fallbackMinRate: 100,
    memoryBatches: 1,
    memoryBatchSize: 300,
    split: false,
  },
};

export interface BenchContext {
  settings: KurirSettings;
  /** The bench's own connection, for inspecting and cleaning up. */
  redis: Redis;
  base: string;
  mode: Mode;
  log(line: string): void;
}

/** CPU seconds used over a window, per process (Kurir's and the bench's own) and by Redis. */
export interface CpuReport {
  wallSeconds: number;
  processes: Record<string, number>;
  bench: number;
  /** The whole Redis server (shared with anything else that uses it meanwhile). */
  redis: number;
}

export async function cpuWindow(redis: Redis, processes: readonly BenchProcess[]): Promise<() => Promise<CpuReport>> {
  const started = performance.now();
  const before = new Map(processes.map((p) => [p, p.cpuSeconds()]));
  const self = selfCpuSeconds();
  const redisBefore = await redisCpuSeconds(redis);
  return async () => {
    const out: Record<string, number> = {};
    for (const p of processes) out[p.name] = round3(p.running ? p.cpuSeconds() - (before.get(p) ?? 0) : Number.NaN);
    return {
      wallSeconds: round3((performance.now() - started) / 1000),
      processes: out,
      bench: round3(selfCpuSeconds() - self),
      redis: round3((await redisCpuSeconds(redis)) - redisBefore),
    };
  };
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
