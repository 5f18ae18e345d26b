import { loadConfig } from '../../common/config/env.js';
import { closedLoop, type ClosedLoopResult } from '../lib/closed-loop.js';
import { cpuWindow, type BenchContext, type CpuReport } from '../lib/context.js';
import { AUTH, createBody, deliverableNumber } from '../lib/kurir.js';
import { ask, freePort, startProcess, waitForHttp, type BenchProcess } from '../lib/processes.js';
import { deletePrefix } from '../lib/redis-memory.js';

/**
 * The bare baselines every ratio is taken against, measured in the same run on the same machine:
 * (1) an express 5 JSON POST handler under the very requests the create figure sends, and
 * (2) BullMQ add + no-op processing with Kurir's connection layout and worker concurrency.
 *
 * Both stay up (idle) for the whole bench, and each Kurir run is paired with a baseline run
 * right before it: on a machine whose background load changes (other test suites, other
 * benches), a ratio of two measurements taken seconds apart is far steadier than a ratio of two
 * taken minutes apart.
 */
export interface BullmqRun {
  jobs: number;
  seconds: number;
  jobsPerSecond: number;
  addSeconds: number;
  cpuSeconds: number;
}

export interface BaselineResults {
  express: { runs: ClosedLoopResult[]; cpu: CpuReport[] };
  bullmq: { concurrency: number; inFlightAdds: number; runs: BullmqRun[]; cpu: CpuReport[] };
}

export class Baselines {
  readonly results: BaselineResults;
  private constructor(
    private readonly ctx: BenchContext,
    private readonly express: BenchProcess,
    private readonly expressUrl: string,
    private readonly bullmq: BenchProcess,
    private readonly bullmqPrefix: string,
    concurrency: number,
  ) {
    this.results = { express: { runs: [], cpu: [] }, bullmq: { concurrency, inFlightAdds: ctx.mode.connections, runs: [], cpu: [] } };
  }

  static async start(ctx: BenchContext): Promise<Baselines> {
    const port = await freePort();
    const express = startProcess({ name: 'bare-express', script: 'bench/children/bare-express.server.ts', env: { PORT: String(port) } });
    const prefix = `${ctx.base}-bullmq`;
    // The concurrency Kurir's workers use unless WORKER_CONCURRENCY says otherwise.
    const concurrency = loadConfig({}).worker.concurrency;
    const bullmq = startProcess({
      name: 'bare-bullmq',
      script: 'bench/children/bare-bullmq.child.ts',
      env: { REDIS_URL: ctx.settings.redisUrl, BENCH_PREFIX: prefix, BENCH_CONCURRENCY: String(concurrency) },
      ipc: true,
    });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHttp(`${url}/healthz`, express);
      await bullmq.takeMessage('ready', 30_000);
    } catch (error) {
      await Promise.allSettled([express.stop(), bullmq.stop()]);
      throw error;
    }
    const baselines = new Baselines(ctx, express, url, bullmq, prefix, concurrency);
    // Warm both up (JIT, connections) so their first measured run is like the others.
    await baselines.expressLoad(ctx.mode.warmupSeconds);
    await ask(bullmq, { cmd: 'run', jobs: Math.round(ctx.mode.bullmqJobs / 4), inFlight: ctx.mode.connections }, 'result');
    return baselines;
  }

  private expressLoad(seconds: number): Promise<ClosedLoopResult> {
    return closedLoop({
      url: this.expressUrl,
      connections: this.ctx.mode.connections,
      durationSeconds: seconds,
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      next: () => ({ path: '/v1/verifications', body: createBody(deliverableNumber()) }),
      expectStatus: 202,
    });
  }

  /** One measured run of the bare express handler; returns its req/s. */
  async measureExpress(): Promise<number> {
    const window = await cpuWindow(this.ctx.redis, [this.express]);
    const result = await this.expressLoad(this.ctx.mode.closedSeconds);
    this.results.express.cpu.push(await window());
    this.results.express.runs.push(result);
    this.ctx.log(`  bare express: ${result.rps.toFixed(0)} req/s, p99 ${result.p99Ms} ms`);
    return result.rps;
  }

  /** One measured run of bare BullMQ add + process; returns its jobs/s. */
  async measureBullmq(): Promise<number> {
    const window = await cpuWindow(this.ctx.redis, [this.bullmq]);
    const result = await ask<BullmqRun>(this.bullmq, { cmd: 'run', jobs: this.ctx.mode.bullmqJobs, inFlight: this.ctx.mode.connections }, 'result');
    this.results.bullmq.cpu.push(await window());
    this.results.bullmq.runs.push(result);
    this.ctx.log(`  bare BullMQ: ${result.jobsPerSecond.toFixed(0)} jobs/s`);
    return result.jobsPerSecond;
  }

  async stop(): Promise<void> {
    await ask(this.bullmq, { cmd: 'close' }, 'closed', 15_000).catch(() => undefined);
    await Promise.allSettled([this.express.stop(), this.bullmq.stop()]);
    await deletePrefix(this.ctx.redis, this.bullmqPrefix);
  }
}
