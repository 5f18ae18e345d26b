import { setTimeout as delay } from 'node:timers/promises';
import { cpuWindow, type BenchContext, type CpuReport } from '../lib/context.js';
import { AUTH, StateTracker, armedTimeouts, createBody, neverDeliveredNumber, reconcile, simulatorMessages, startEmbedded } from '../lib/kurir.js';
import { openLoop } from '../lib/open-loop.js';
import { max, percentile, round } from '../lib/stats.js';

/**
 * Fallback timer precision: verifications to `…1002` numbers (WhatsApp accepted and `sent`,
 * never delivered) with a 2 s delivery timeout, created at a fixed arrival rate. For each one,
 * its deadline is the WhatsApp delivery's `sentAt` (GET timeline) + 2 s; its lateness is how long
 * after that the SMS reached the provider (simulator log). The scheduler's part alone — when the
 * fallback was decided, the SMS delivery's `queuedAt` — is reported beside it.
 */
export interface FallbackRun {
  count: number;
  peakArmed: number;
  lateness: { p50Ms: number; p99Ms: number; maxMs: number };
  decisionLateness: { p50Ms: number; p99Ms: number; maxMs: number };
  early: number;
  missing: number;
  whatsapp: { lost: number; duplicates: number };
  sms: { lost: number; duplicates: number };
}

export interface FallbackResults {
  timeoutSeconds: number;
  rate: number;
  /** A first run on the fresh deployment, before the measured ones (see measureFallback). */
  warmup: FallbackRun;
  runs: FallbackRun[];
  cpu: CpuReport;
}

const TIMEOUT_SECONDS = 2;
const WARMUP_COUNT = 300;

interface Timeline {
  deliveries: { n: number; channel: string; sentAt: string | null; queuedAt: string | null }[];
}

/**
 * `rate`: the arrival rate of the `…1002` creates. A fallback costs about two verifications
 * (a WhatsApp send and an SMS send), so the bench offers about half the sustained end-to-end
 * rate: the timers are measured, not an overloaded pipeline.
 */
export async function measureFallback(ctx: BenchContext, rate: number): Promise<FallbackResults> {
  const prefix = `${ctx.base}-fb`;
  const deployment = await startEmbedded(ctx.settings, prefix, { KURIR_DELIVERY_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS) }, 'fallback');
  const target = { apiUrl: deployment.apiUrl, simulatorUrl: deployment.simulatorUrl as string, prefix, rate };
  const phaseCpu = await cpuWindow(ctx.redis, deployment.processes);
  try {
    // The deployment is fresh: its first timers run through code V8 has not optimised yet (the
    // first of three runs was 2–3× the others in runs M and N). Measured and kept, not a figure.
    const warmup = await fallbackRun(ctx, target, WARMUP_COUNT);
    ctx.log(`  fallback warm-up: ${warmup.count} timers, lateness p99 ${warmup.lateness.p99Ms} ms (not in the figure)`);
    const runs: FallbackRun[] = [];
    for (let run = 0; run < ctx.mode.fallbackRuns; run += 1) {
      const result = await fallbackRun(ctx, target, ctx.mode.fallbackCount);
      runs.push(result);
      ctx.log(`  fallback run ${run + 1}: ${result.count} timers (peak ${result.peakArmed} armed), lateness p50 ${result.lateness.p50Ms} ms p99 ${result.lateness.p99Ms} ms max ${result.lateness.maxMs} ms`);
    }
    return { timeoutSeconds: TIMEOUT_SECONDS, rate, warmup, runs, cpu: await phaseCpu() };
  } finally {
    await deployment.stop();
  }
}

/** `count` fallbacks created at `rate`, each one's lateness measured once its SMS went out. */
async function fallbackRun(
  ctx: BenchContext,
  target: { apiUrl: string; simulatorUrl: string; prefix: string; rate: number },
  count: number,
): Promise<FallbackRun> {
  const ids: string[] = [];
  // The SMS delivery (n = 2) reaching the simulator means the fallback went out.
  const tracker = new StateTracker(ctx.redis, target.prefix, 'd2:st', new Set(['accepted', 'sent', 'delivered', 'read', 'failed']));
  const load = openLoop({
    baseUrl: target.apiUrl,
    rate: target.rate,
    count,
    headers: AUTH,
    build: () => ({ method: 'POST', path: '/v1/verifications', body: createBody(neverDeliveredNumber(), { ttlSeconds: 120 }) }),
    onAnswer: (shot) => {
      if (shot.status !== 202 || shot.body === undefined) return;
      const id = (JSON.parse(shot.body) as { id?: string }).id;
      if (id !== undefined) {
        ids.push(id);
        tracker.watch(id);
      }
    },
  });
  let peakArmed = 0;
  let watching = true;
  const armed = (async () => {
    while (watching) {
      // The codes live 120 s: a timer due within the timeout (+ slack) waits for a timeout.
      peakArmed = Math.max(peakArmed, await armedTimeouts(ctx.redis, target.prefix, TIMEOUT_SECONDS * 1000 + 500));
      await delay(100);
    }
  })();
  await load.answered;
  tracker.start();
  await tracker.drained(60_000);
  tracker.stop();
  watching = false;
  await armed;
  // Let the SMS receipts land before the next run starts (they are not part of the figure).
  await delay(600);

  const messages = await simulatorMessages(target.simulatorUrl);
  const smsAt = new Map<string, number>();
  for (const m of messages) {
    if (m.channel === 'sms' && m.httpStatus === 200 && m.externalId !== undefined && !smsAt.has(m.externalId)) smsAt.set(m.externalId, m.receivedAt);
  }
  const timelines = await getTimelines(target.apiUrl, ids);
  const lateness: number[] = [];
  const decision: number[] = [];
  let missing = 0;
  for (const id of ids) {
    const timeline = timelines.get(id);
    const whatsapp = timeline?.deliveries.find((d) => d.n === 1);
    const sms = timeline?.deliveries.find((d) => d.n === 2);
    const sentSms = smsAt.get(`${id}-2`);
    if (whatsapp?.sentAt == null || sms?.queuedAt == null || sentSms === undefined) {
      missing += 1;
      continue;
    }
    const deadline = Date.parse(whatsapp.sentAt) + TIMEOUT_SECONDS * 1000;
    lateness.push(sentSms - deadline);
    decision.push(Date.parse(sms.queuedAt) - deadline);
  }
  const wa = reconcile(messages, ids, 'whatsapp', 1);
  const sms = reconcile(messages, ids, 'sms', 2);
  return {
    count: ids.length,
    peakArmed,
    lateness: { p50Ms: round(percentile(lateness, 0.5), 1), p99Ms: round(percentile(lateness, 0.99), 1), maxMs: round(max(lateness), 1) },
    decisionLateness: { p50Ms: round(percentile(decision, 0.5), 1), p99Ms: round(percentile(decision, 0.99), 1), maxMs: round(max(decision), 1) },
    early: lateness.filter((l) => l < 0).length,
    missing,
    whatsapp: { lost: wa.lost, duplicates: wa.duplicates },
    sms: { lost: sms.lost, duplicates: sms.duplicates },
  };
}

/** GET /v1/verifications/:id for every id, 16 at a time. */
async function getTimelines(apiUrl: string, ids: readonly string[]): Promise<Map<string, Timeline>> {
  const out = new Map<string, Timeline>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < ids.length) {
        const id = ids[next] as string;
        next += 1;
        const response = await fetch(`${apiUrl}/v1/verifications/${id}`, { headers: AUTH });
        if (response.status === 200) out.set(id, (await response.json()) as Timeline);
        else await response.arrayBuffer();
      }
    }),
  );
  return out;
}
