import { setTimeout as delay } from 'node:timers/promises';
import { closedLoop } from '../lib/closed-loop.js';
import { cpuWindow, type BenchContext, type CpuReport } from '../lib/context.js';
import {
  AUTH,
  StateTracker,
  blockNumber,
  createBody,
  queuesIdle,
  reconcile,
  simulatorMessages,
  type Deployment,
} from '../lib/kurir.js';
import { openLoop } from '../lib/open-loop.js';
import { percentile, round, slope } from '../lib/stats.js';
import type { Baselines } from './baselines.phase.js';

/**
 * End-to-end sustained rate: create → WhatsApp send at the simulator → `sent` and `delivered`
 * receipts through the webhook → delivery state `delivered`, under a fixed arrival rate.
 *
 * A capacity probe (a closed-loop burst, then the time until every one is delivered) places a
 * ladder of steps; each step offers a fixed rate for a fixed time, and is *sustained* when
 *   - every create was answered 202 and the client kept its schedule (p99 lag ≤ 100 ms),
 *   - the backlog (due creates not yet delivered) did not grow after the step's first second
 *     (least-squares slope ≤ 10 % of the rate, i.e. ≥ 90 % of the offered load was absorbed),
 *   - every verification of the step was delivered within 2.5 s after the step's last create.
 * A run climbs (×1.25 the first, ×1.1 the others) until a step fails, then bisects twice between
 * the best pass and the fail; its figure is the highest sustained rate. Every send is reconciled with the simulator's log.
 * Each run is paired with a bare BullMQ run just before it (`ratio` is per pair).
 */
export interface StepResult {
  rate: number;
  seconds: number;
  offered: number;
  created: number;
  errors: number;
  delivered: number;
  notDelivered: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  lagP99Ms: number;
  backlogSlopePerSecond: number;
  maxBacklog: number;
  drainMs: number;
  sustained: boolean;
  why: string[];
  cpu: CpuReport;
}

export interface E2eResults {
  kind: Deployment['kind'];
  probe: { count: number; seconds: number; capacity: number };
  runs: { steps: StepResult[]; sustainedRate: number; bareBullmq: number; ratio: number }[];
  reconcile: { expected: number; lost: number; duplicates: number; refused: number; undelivered: number; unexpectedSms: number };
  completions: number;
  cpu: CpuReport;
  /** CPU seconds per delivered verification, per process and for Redis, over the whole phase. */
  cpuMsPerVerification: Record<string, number>;
}

const DRAIN_MS = 2500;
const MAX_STEPS = 9;
const CLIMB = 1.25;
const DELIVERED = new Set(['delivered', 'read']);

export async function measureE2e(ctx: BenchContext, deployment: Deployment, baselines: Baselines | undefined, runs: number, startHint?: number): Promise<E2eResults> {
  const tracker = new StateTracker(ctx.redis, deployment.prefix, 'd1:st', DELIVERED);
  const allIds: string[] = [];
  const phaseCpu = await cpuWindow(ctx.redis, deployment.processes);
  for (const p of deployment.processes) p.startProfile();

  // Warm-up, which also proves every role is up (the worker processes have no HTTP endpoint).
  await burst(ctx, deployment, tracker, allIds, 100, 60_000);
  const probe = await burst(ctx, deployment, tracker, allIds, ctx.mode.probeCount, 60_000);
  ctx.log(`  probe: ${probe.count} delivered in ${probe.seconds.toFixed(2)} s → ~${probe.capacity.toFixed(0)}/s`);

  const results: E2eResults['runs'] = [];
  const say = (run: number, step: StepResult) =>
    ctx.log(`  ${deployment.kind} run ${run + 1} step ${step.rate}/s: ${step.sustained ? 'sustained' : `not sustained (${step.why.join('; ')})`}, p99 ${step.latencyP99Ms.toFixed(0)} ms, backlog slope ${step.backlogSlopePerSecond.toFixed(1)}/s`);
  let hint = startHint ?? probe.capacity;
  for (let run = 0; run < runs; run += 1) {
    const bare = baselines === undefined ? Number.NaN : await baselines.measureBullmq();
    // The first run searches coarsely from the probe (×1.25), later runs from just below what the
    // first one found (×1.1); every run then bisects twice between its best pass and its first
    // fail, so that a figure is within ~2.5 % of where the pipeline stops keeping up instead of up
    // to a whole climbing step (10–25 %) below it.
    const coarse = run === 0;
    const climb = coarse ? CLIMB : 1.1;
    const steps: StepResult[] = [];
    let rate = Math.max(10, Math.round(hint * (coarse ? 0.75 : 0.9)));
    let best = 0;
    let failedAt = Number.POSITIVE_INFINITY;
    let descents = 0;
    // A run that finds nothing sustained after a few steps down ends with 0 (the machine or the
    // pipeline is in trouble) instead of spending minutes walking down.
    while (steps.length < MAX_STEPS && descents <= 3) {
      const step = await runStep(ctx, deployment, tracker, allIds, rate);
      steps.push(step);
      say(run, step);
      if (step.sustained) {
        best = Math.max(best, rate);
        if (Number.isFinite(failedAt)) break;
        rate = Math.round(rate * climb);
      } else {
        failedAt = Math.min(failedAt, rate);
        if (best > 0) break;
        descents += 1;
        rate = Math.max(5, Math.round(rate * (coarse ? 0.7 : 0.85)));
      }
    }
    for (let bisect = 0; bisect < 2 && best > 0 && Number.isFinite(failedAt) && steps.length < MAX_STEPS; bisect += 1) {
      const mid = Math.round((best + failedAt) / 2);
      if (mid <= best || mid >= failedAt) break;
      const step = await runStep(ctx, deployment, tracker, allIds, mid);
      steps.push(step);
      say(run, step);
      if (step.sustained) best = mid;
      else failedAt = mid;
    }
    results.push({ steps, sustainedRate: best, bareBullmq: bare, ratio: best / bare });
    ctx.log(`  ${deployment.kind} run ${run + 1}: sustained ${best}/s`);
    if (coarse && best > 0) hint = best;
  }

  await tracker.drained(30_000);
  tracker.stop();
  await queuesIdle(ctx.redis, deployment.prefix, ['send-whatsapp', 'receipts'], 15_000);
  const cpu = await phaseCpu();
  const messages = deployment.simulatorUrl === undefined ? [] : await simulatorMessages(deployment.simulatorUrl);
  const whatsapp = reconcile(messages, allIds, 'whatsapp', 1);
  const sms = reconcile(messages, allIds, 'sms', 2);
  const undelivered = allIds.filter((id) => !tracker.reachedAt.has(id)).length;
  const completions = allIds.length - undelivered;
  const cpuMsPerVerification: Record<string, number> = {};
  for (const [name, seconds] of Object.entries(cpu.processes)) cpuMsPerVerification[name] = round((seconds * 1000) / Math.max(1, completions), 3);
  cpuMsPerVerification.redis = round((cpu.redis * 1000) / Math.max(1, completions), 3);
  cpuMsPerVerification.bench = round((cpu.bench * 1000) / Math.max(1, completions), 3);
  return {
    kind: deployment.kind,
    probe,
    runs: results,
    reconcile: { ...whatsapp, undelivered, unexpectedSms: sms.expected - sms.lost },
    completions,
    cpu,
    cpuMsPerVerification,
  };
}

/** `count` creates at the closed-loop concurrency; resolves when all are delivered. */
async function burst(ctx: BenchContext, deployment: Deployment, tracker: StateTracker, allIds: string[], count: number, timeoutMs: number) {
  const started = performance.now();
  const ids: string[] = [];
  tracker.start();
  await closedLoop({
    url: deployment.apiUrl,
    connections: ctx.mode.connections,
    durationSeconds: 0,
    amount: count,
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json' },
    next: () => ({ path: '/v1/verifications', body: createBody(blockNumber(), { ttlSeconds: 60 }) }),
    onResponse: (status, body) => {
      if (status !== 202) return;
      const id = (JSON.parse(body) as { id?: string }).id;
      if (id === undefined) return;
      ids.push(id);
      allIds.push(id);
      tracker.watch(id);
    },
    expectStatus: 202,
  });
  const ok = await tracker.drained(timeoutMs);
  if (!ok) throw new Error(`${deployment.kind}: ${tracker.pendingCount} verifications not delivered within ${timeoutMs} ms`);
  const last = Math.max(...ids.map((id) => tracker.reachedAt.get(id) ?? 0));
  const seconds = (last - started) / 1000;
  return { count: ids.length, seconds, capacity: ids.length / seconds };
}

async function runStep(ctx: BenchContext, deployment: Deployment, tracker: StateTracker, allIds: string[], rate: number): Promise<StepResult> {
  const seconds = ctx.mode.stepSeconds;
  const count = Math.round(rate * seconds);
  const window = await cpuWindow(ctx.redis, deployment.processes);
  const stepIds: string[] = [];
  const scheduledAt = new Map<string, number>();
  let errors = 0;
  const run = openLoop({
    baseUrl: deployment.apiUrl,
    rate,
    count,
    headers: AUTH,
    maxSockets: 512,
    build: () => ({ method: 'POST', path: '/v1/verifications', body: createBody(blockNumber(), { ttlSeconds: 60 }) }),
    onAnswer: (shot) => {
      if (shot.status !== 202 || shot.body === undefined) {
        errors += 1;
        return;
      }
      const id = (JSON.parse(shot.body) as { id?: string }).id;
      if (id === undefined) return;
      stepIds.push(id);
      allIds.push(id);
      scheduledAt.set(id, shot.scheduledAt);
      tracker.watch(id);
    },
  });
  tracker.start();
  // Backlog: creates that were due by now and are not delivered yet (answered or not).
  const backlog: { x: number; y: number }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await delay(100);
      const now = performance.now();
      const due = Math.min(count, Math.max(0, Math.floor(((now - run.startedAt) * rate) / 1000) + 1));
      let delivered = 0;
      for (const id of stepIds) if (tracker.reachedAt.has(id)) delivered += 1;
      if (now <= run.lastScheduledAt) backlog.push({ x: (now - run.startedAt) / 1000, y: due - delivered });
    }
  })();
  await run.sent;
  await Promise.race([run.answered, delay(DRAIN_MS)]);
  const remaining = run.lastScheduledAt + DRAIN_MS - performance.now();
  let drained = remaining > 0 ? await tracker.drained(remaining) : false;
  // A step's leftovers would burden the next step: let them finish first (not part of the step).
  const stepPending = () => stepIds.filter((id) => !tracker.reachedAt.has(id)).length;
  if (!drained) drained = stepPending() === 0;
  const notDelivered = stepPending();
  sampling = false;
  await sampler;
  const cpu = await window();
  if (!(await tracker.drained(20_000))) ctx.log(`  warning: ${tracker.pendingCount} verifications still undelivered 20 s after the step`);

  const latencies = stepIds.filter((id) => tracker.reachedAt.has(id)).map((id) => (tracker.reachedAt.get(id) as number) - (scheduledAt.get(id) as number));
  const lags = run.shots.map((shot) => shot.sentAt - shot.scheduledAt);
  const lastDelivered = Math.max(0, ...stepIds.map((id) => tracker.reachedAt.get(id) ?? 0));
  // After the first second the backlog of a sustained rate is flat (rate × latency); a rate
  // beyond capacity makes it grow by the difference every second.
  const settled = backlog.filter((p) => p.x >= Math.min(1, seconds / 4));
  const backlogSlope = slope(settled);
  const lagP99 = percentile(lags, 0.99);
  const why: string[] = [];
  if (errors > 0 || stepIds.length < count) why.push(`${errors} failed creates`);
  if (lagP99 > 100) why.push(`client behind schedule (lag p99 ${lagP99.toFixed(0)} ms)`);
  if (backlogSlope > 0.1 * rate) why.push(`backlog grows ${backlogSlope.toFixed(0)}/s`);
  if (notDelivered > 0) why.push(`${notDelivered} not delivered ${DRAIN_MS} ms after the last create`);
  return {
    rate,
    seconds,
    offered: count,
    created: stepIds.length,
    errors,
    delivered: stepIds.length - notDelivered,
    notDelivered,
    latencyP50Ms: round(percentile(latencies, 0.5), 1),
    latencyP99Ms: round(percentile(latencies, 0.99), 1),
    lagP99Ms: round(lagP99, 1),
    backlogSlopePerSecond: round(backlogSlope, 1),
    maxBacklog: Math.max(0, ...backlog.map((p) => p.y)),
    drainMs: round(lastDelivered - run.lastScheduledAt, 0),
    sustained: why.length === 0,
    why,
    cpu,
  };
}
