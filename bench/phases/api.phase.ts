import { closedLoop, type ClosedLoopResult } from '../lib/closed-loop.js';
import { cpuWindow, type BenchContext, type CpuReport } from '../lib/context.js';
import { AUTH, createBody, deliverableNumber, openCodes, startApiOnly } from '../lib/kurir.js';
import { classDelta, snapshotPrefix, usedMemory, type PrefixSnapshot } from '../lib/redis-memory.js';
import type { Baselines } from './baselines.phase.js';

/**
 * Create and check against the API role alone (`npm run start:api`, nothing consuming its
 * queues), at the bare express figure's concurrency. The creates also give the memory of a
 * verification that is waiting for its first send (its record, its queued job, its limit
 * entries), and the verifications the check figures then check. Every run is paired with a bare
 * express run just before it; `ratios` are per pair.
 */
export interface ApiResults {
  create: { runs: ClosedLoopResult[]; ratios: number[]; cpu: CpuReport[]; memory: { usedMemoryPerVerification: number[]; prefixBytesPerVerification: number[]; byClass: Record<string, number> } };
  checkWrong: { runs: ClosedLoopResult[]; ratios: number[]; cpu: CpuReport[]; answers: Record<string, number> };
  checkRight: { runs: ClosedLoopResult[]; ratios: number[]; cpu: CpuReport[]; answers: Record<string, number> };
}

/** Wrong-code checks per verification: below the policy's maxAttempts (20), so each stays pending. */
const WRONG_CHECKS_PER_VERIFICATION = 15;

export async function measureApi(ctx: BenchContext, baselines: Baselines): Promise<ApiResults> {
  const prefix = `${ctx.base}-api`;
  const deployment = await startApiOnly(ctx.settings, prefix);
  const [api] = deployment.processes;
  if (api === undefined) throw new Error('no api process');
  const ids: string[] = [];
  const collectId = (status: number, body: string) => {
    if (status !== 202) return;
    const id = (JSON.parse(body) as { id?: string }).id;
    if (id !== undefined) ids.push(id);
  };
  const create = (seconds: number) =>
    closedLoop({
      url: deployment.apiUrl,
      connections: ctx.mode.connections,
      durationSeconds: seconds,
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      next: () => ({ path: '/v1/verifications', body: createBody(deliverableNumber()) }),
      onResponse: collectId,
      expectStatus: 202,
    });
  try {
    api.startProfile();
    await create(ctx.mode.warmupSeconds);
    const results: ApiResults = {
      create: { runs: [], ratios: [], cpu: [], memory: { usedMemoryPerVerification: [], prefixBytesPerVerification: [], byClass: {} } },
      checkWrong: { runs: [], ratios: [], cpu: [], answers: {} },
      checkRight: { runs: [], ratios: [], cpu: [], answers: {} },
    };
    let first: PrefixSnapshot | undefined;
    for (let run = 0; run < ctx.mode.runs; run += 1) {
      const bare = await baselines.measureExpress();
      // A full snapshot only around the first run: it scans every key of the prefix.
      const before = run === 0 ? await snapshotPrefix(ctx.redis, prefix, 0) : undefined;
      first ??= before;
      const memoryBefore = await usedMemory(ctx.redis);
      const countBefore = ids.length;
      const window = await cpuWindow(ctx.redis, [api]);
      const result = await create(ctx.mode.closedSeconds);
      results.create.cpu.push(await window());
      results.create.runs.push(result);
      results.create.ratios.push(result.rps / bare);
      const created = ids.length - countBefore;
      results.create.memory.usedMemoryPerVerification.push(((await usedMemory(ctx.redis)) - memoryBefore) / Math.max(1, created));
      if (before !== undefined) {
        const after = await snapshotPrefix(ctx.redis, prefix, 0);
        const events = (s: PrefixSnapshot) => s.classes['bullmq-events']?.bytes ?? 0;
        results.create.memory.prefixBytesPerVerification.push((after.bytes - events(after) - (before.bytes - events(before))) / Math.max(1, created));
        results.create.memory.byClass = classDelta(before, after, Math.max(1, created));
      }
      ctx.log(`  create run ${run + 1}: ${result.rps.toFixed(0)} /s, p99 ${result.p99Ms} ms (${result.unexpected} unexpected)`);
    }

    // Wrong codes: a third of the verifications, each checked a bounded number of times; the
    // others are checked once each with their right code.
    const wrongPool = ids.slice(0, Math.min(Math.ceil(ids.length * 0.3), 4000));
    let wrongNext = 0;
    const countAnswer = (answers: Record<string, number>) => (status: number, body: string) => {
      const key = status === 200 ? String((JSON.parse(body) as { status?: string }).status) : `http_${status}`;
      answers[key] = (answers[key] ?? 0) + 1;
    };
    const checkLoad = (seconds: number, amount: number | undefined, next: () => { path: string; body: string }, answers: Record<string, number>) =>
      closedLoop({
        url: deployment.apiUrl,
        connections: ctx.mode.connections,
        durationSeconds: seconds,
        amount,
        method: 'POST',
        headers: { ...AUTH, 'content-type': 'application/json' },
        next,
        onResponse: countAnswer(answers),
        expectStatus: 200,
      });
    const wrong = () => {
      const id = wrongPool[Math.floor(wrongNext / WRONG_CHECKS_PER_VERIFICATION) % wrongPool.length];
      wrongNext += 1;
      return { path: `/v1/verifications/${id}/check`, body: '{"code":"0000000000"}' };
    };
    await checkLoad(ctx.mode.warmupSeconds, undefined, wrong, {});

    // Right codes: the other verifications, each checked once with its code (opened from Redis
    // with the bench's own secret, the way a send worker opens it for a fallback).
    const rightPool = ids.slice(wrongPool.length);
    const codes = await openCodes(ctx.redis, prefix, rightPool);
    const rightIds = [...codes.keys()];
    let rightNext = 0;
    const right = () => {
      const id = rightIds[rightNext % rightIds.length] as string;
      rightNext += 1;
      return { path: `/v1/verifications/${id}/check`, body: JSON.stringify({ code: codes.get(id) }) };
    };
    const perRun = Math.floor(rightIds.length / (ctx.mode.runs + 0.25));
    if (perRun >= 4 * ctx.mode.connections) await checkLoad(0, Math.floor(perRun / 4), right, {});
    for (let run = 0; run < ctx.mode.runs; run += 1) {
      const bare = await baselines.measureExpress();
      let window = await cpuWindow(ctx.redis, [api]);
      const wrongResult = await checkLoad(ctx.mode.closedSeconds, undefined, wrong, results.checkWrong.answers);
      results.checkWrong.cpu.push(await window());
      results.checkWrong.runs.push(wrongResult);
      results.checkWrong.ratios.push(wrongResult.rps / bare);
      ctx.log(`  check (wrong code) run ${run + 1}: ${wrongResult.rps.toFixed(0)} /s, p99 ${wrongResult.p99Ms} ms`);
      if (perRun < ctx.mode.connections) continue;
      window = await cpuWindow(ctx.redis, [api]);
      // Bounded by the verifications left (each approves once), and by about a run's length.
      const amount = Math.min(perRun, Math.round(wrongResult.rps * ctx.mode.closedSeconds));
      const rightResult = await checkLoad(ctx.mode.closedSeconds, amount, right, results.checkRight.answers);
      results.checkRight.cpu.push(await window());
      results.checkRight.runs.push(rightResult);
      results.checkRight.ratios.push(rightResult.rps / bare);
      ctx.log(`  check (right code) run ${run + 1}: ${rightResult.rps.toFixed(0)} /s, p99 ${rightResult.p99Ms} ms over ${rightResult.requests} checks`);
    }
    return results;
  } finally {
    await deployment.stop();
  }
}
