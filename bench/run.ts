/**
 * Kurir's benchmark (`npm run bench`; see BENCHMARKS.md for how to read it).
 *
 *   node --import tsx bench/run.ts            # the full run, about 4 minutes on 2 cores
 *   node --import tsx bench/run.ts --quick    # about 1 minute: shorter runs, no split processes
 *   options: --profile (V8 CPU profiles of every Kurir process, summarised at the end)
 *            --only=api,e2e,memory,fallback,split (the bare baselines always run)   --log-level=info   --keep
 *
 * In one run on one machine it measures the bare baselines (express JSON POST, BullMQ add +
 * no-op process) and Kurir against them: create and check throughput against the API role alone,
 * the end-to-end sustained rate with every role in one process and with the roles split into
 * processes, fallback timer precision, Redis memory per in-flight verification and what is left
 * after the verifications completed. Every figure is the median of several runs. It prints a
 * table with the budgets of issue 6, writes `bench/results/<timestamp>.json`, and removes every
 * Redis key it created (its own prefix `kbench-<random>`).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadPolicy } from '../common/config/policy.js';
import { QUEUES } from '../common/jobs/catalogue.js';
import { EVENT_STREAM_MAX_LEN } from '../common/jobs/queues.js';
import { MODES, type BenchContext, type CpuReport, type Mode } from './lib/context.js';
import { RETENTION_SECONDS, newBasePrefix, startEmbedded, startSplit, type KurirSettings } from './lib/kurir.js';
import { summarizeProfile, type ProfileSummary } from './lib/profile.js';
import { residualReport, type ResidualGroup } from './lib/residual.js';
import { REPO_ROOT } from './lib/processes.js';
import { scanKeys, snapshotPrefix, usedMemory, type PrefixSnapshot } from './lib/redis-memory.js';
import { figure, median, round, type Figure } from './lib/stats.js';
import { measureApi, type ApiResults } from './phases/api.phase.js';
import { Baselines, type BaselineResults } from './phases/baselines.phase.js';
import { measureE2e, type E2eResults } from './phases/e2e.phase.js';
import { measureFallback, type FallbackResults } from './phases/fallback.phase.js';
import { measureInflightMemory, type MemoryResults } from './phases/memory.phase.js';

const PHASES = ['api', 'e2e', 'memory', 'fallback', 'split'] as const;
type Phase = (typeof PHASES)[number];

/** Issue 6's budgets. */
const BUDGETS = {
  createRatio: 0.4,
  checkRatio: 0.6,
  e2eRatio: 0.05,
  fallbackP99Ms: 1000,
  inflightBytes: 4096,
  flatTolerance: 0.1,
  completions: 100_000,
} as const;

interface Args {
  mode: Mode;
  only: Set<Phase>;
  profile: boolean;
  logLevel: string;
  keep: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  let mode: Mode = MODES.default;
  let only = new Set<Phase>(PHASES);
  let profile = false;
  let logLevel = 'info';
  let keep = false;
  for (const arg of argv) {
    if (arg === '--quick') mode = MODES.quick;
    else if (arg === '--profile') profile = true;
    else if (arg === '--keep') keep = true;
    else if (arg.startsWith('--log-level=')) logLevel = arg.slice('--log-level='.length);
    else if (arg.startsWith('--only=')) {
      const wanted = arg.slice('--only='.length).split(',');
      for (const phase of wanted) if (!(PHASES as readonly string[]).includes(phase)) throw new Error(`--only: unknown phase "${phase}" (${PHASES.join(', ')})`);
      only = new Set(wanted as Phase[]);
    } else throw new Error(`unknown argument "${arg}"`);
  }
  // Quick runs leave the split processes out unless asked for by name.
  if (!mode.split && !argv.some((a) => a.startsWith('--only='))) only.delete('split');
  return { mode, only, profile, logLevel, keep };
}

/**
 * The bench policy as Kurir will load it. The policy schema is strict, so a key the checked-out
 * code does not know yet (e.g. `throughput` before the provider caps exist) is dropped, with a
 * note, instead of stopping every role.
 */
function effectivePolicy(resultsDir: string, notes: string[]): string {
  const shipped = fileURLToPath(new URL('./bench.policy.yaml', import.meta.url));
  try {
    loadPolicy(shipped);
    return shipped;
  } catch (error) {
    const document = parseYaml(readFileSync(shipped, 'utf8')) as Record<string, unknown>;
    const message = error instanceof Error ? error.message : String(error);
    const unknown = Object.keys(document).filter((key) => message.includes(key));
    if (unknown.length === 0) throw error;
    for (const key of unknown) delete document[key];
    const copy = `${resultsDir}/.bench.policy.effective.yaml`;
    writeFileSync(copy, stringifyYaml(document));
    loadPolicy(copy);
    notes.push(`policy keys not known to this checkout, dropped: ${unknown.join(', ')}`);
    return copy;
  }
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

/** Waits until no queue of the prefix has work waiting, running or overdue (e.g. expiry jobs). */
async function settle(redis: Redis, prefix: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const queues = Object.values(QUEUES);
  while (Date.now() < deadline) {
    let busy = 0;
    for (const queue of queues) {
      const key = `{${prefix}-${queue}}:${queue}`;
      busy += (await redis.llen(`${key}:wait`)) + (await redis.llen(`${key}:active`)) + (await redis.zcard(`${key}:prioritized`));
      // BullMQ scores delayed jobs as timestamp × 4096 (+ a counter).
      busy += await redis.zcount(`${key}:delayed`, 0, Date.now() * 4096);
    }
    if (busy === 0) return;
    await delay(200);
  }
}

interface Results {
  baselines?: BaselineResults;
  api?: ApiResults;
  e2e?: E2eResults;
  split?: E2eResults;
  memory?: MemoryResults;
  fallback?: FallbackResults;
  residual?: {
    completions: number;
    horizonSeconds: number;
    atEnd: PrefixSnapshot;
    after?: PrefixSnapshot;
    secondsAfter?: number;
    /** Whether `after` was taken once the records' ttlSeconds + retention had passed. */
    waited?: boolean;
  };
  errors: Record<string, string>;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const resultsDir = `${REPO_ROOT}bench/results`;
  mkdirSync(resultsDir, { recursive: true });
  const profileDir = args.profile ? `${resultsDir}/profiles-${stamp}` : undefined;
  if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true });
  const notes: string[] = [];
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const settings: KurirSettings = { redisUrl, policyFile: effectivePolicy(resultsDir, notes), logLevel: args.logLevel, profileDir };
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const base = newBasePrefix();
  const t0 = performance.now();
  const log = (line: string) => process.stdout.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
  const ctx: BenchContext = { settings, redis, base, mode: args.mode, log };
  const results: Results = { errors: {} };
  const baselineMemory = await usedMemory(redis);
  const meta = {
    startedAt: startedAt.toISOString(),
    mode: args.mode.name,
    phases: [...args.only],
    // Others change the tree while the bench runs: the figures are of this commit plus these files.
    git: { commit: git(['rev-parse', 'HEAD']), changedFiles: git(['status', '--porcelain']).split('\n').filter((l) => l !== '') },
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '',
    loadAverageAtStart: loadavg().map((v) => round(v, 2)),
    redis: (/redis_version:(\S+)/.exec(await redis.info('server')) ?? [])[1] ?? '',
    redisKeysAtStart: await redis.dbsize(),
    baselineUsedMemory: baselineMemory,
    prefix: base,
    logLevel: args.logLevel,
    recordRetentionSeconds: RETENTION_SECONDS,
    policyFile: settings.policyFile,
    notes,
  };
  log(`Kurir bench (${args.mode.name}), prefix ${base}, phases ${[...args.only].join(', ')}; load average ${meta.loadAverageAtStart.join(' ')}`);
  if (meta.loadAverageAtStart[0] !== undefined && meta.loadAverageAtStart[0] > 0.5) {
    log(`  note: the machine is not idle (load ${meta.loadAverageAtStart[0]}): figures will be lower and noisier`);
  }
  for (const note of notes) log(`  note: ${note}`);

  const phase = async (name: string, body: () => Promise<void>) => {
    log(`${name} …`);
    try {
      await body();
    } catch (error) {
      results.errors[name] = error instanceof Error ? (error.stack ?? error.message) : String(error);
      log(`  ${name} FAILED: ${error instanceof Error ? error.message : String(error)}`);
    }
  };

  let e2eEndedAt: number | undefined;
  let baselines: Baselines | undefined;
  try {
    // The baselines stay up, idle, and are measured right before each Kurir run they are compared to.
    await phase('bare baselines (start)', async () => {
      baselines = await Baselines.start(ctx);
      results.baselines = baselines.results;
    });
    if (baselines !== undefined && !args.only.has('api')) {
      for (let run = 0; run < args.mode.runs; run += 1) await baselines.measureExpress();
    }
    if (baselines !== undefined && !args.only.has('e2e') && !args.only.has('split')) {
      for (let run = 0; run < args.mode.runs; run += 1) await baselines.measureBullmq();
    }
    if (args.only.has('api') && baselines !== undefined) {
      const bare = baselines;
      await phase('create + check (API role alone)', async () => void (results.api = await measureApi(ctx, bare)));
    }
    if (args.only.has('e2e')) {
      await phase('end-to-end, all roles in one process', async () => {
        const deployment = await startEmbedded(settings, `${base}-e2e`);
        try {
          results.e2e = await measureE2e(ctx, deployment, baselines, args.mode.e2eRuns);
        } finally {
          await deployment.stop();
        }
        e2eEndedAt = Date.now();
        // Records live ttlSeconds (60) + retention (60) after their create; anything that lasts
        // beyond that is what stays after the verifications completed.
        const atEnd = await snapshotPrefix(redis, `${base}-e2e`, (60 + RETENTION_SECONDS + 5) * 1000);
        results.residual = { completions: results.e2e.completions, horizonSeconds: 60 + RETENTION_SECONDS + 5, atEnd };
      });
    }
    if (args.only.has('memory')) await phase('in-flight memory', async () => void (results.memory = await measureInflightMemory(ctx)));
    if (args.only.has('fallback')) {
      const sustained = results.e2e === undefined ? Number.NaN : median(results.e2e.runs.map((r) => r.sustainedRate));
      const rate = Number.isFinite(sustained) && sustained > 0 ? Math.min(args.mode.fallbackRate, Math.max(args.mode.fallbackMinRate, Math.round(sustained / 2))) : args.mode.fallbackMinRate;
      await phase(`fallback timers (${args.mode.fallbackCount} at ${rate}/s)`, async () => void (results.fallback = await measureFallback(ctx, rate)));
    }
    if (args.only.has('split')) {
      await phase('end-to-end, roles split into processes', async () => {
        const deployment = await startSplit(settings, `${base}-split`);
        try {
          results.split = await measureE2e(ctx, deployment, baselines, Math.max(1, args.mode.splitRuns), results.e2e === undefined ? undefined : median(results.e2e.runs.map((r) => r.sustainedRate)));
        } finally {
          await deployment.stop();
        }
      });
    }
    // Quick runs do not wait out the retention window: their residual is projected from TTLs.
    if (results.residual !== undefined && e2eEndedAt !== undefined && args.mode.name === 'default') {
      const residual = results.residual;
      await phase('memory left after the completions', async () => {
        const endedAt = e2eEndedAt as number;
        const waitMs = residual.horizonSeconds * 1000 - (Date.now() - endedAt);
        if (waitMs > 0 && waitMs < 150_000) {
          log(`  waiting ${(waitMs / 1000).toFixed(0)} s for the end-to-end records to pass ttlSeconds + retention …`);
          await delay(waitMs);
        }
        // The same deployment again, so that whatever came due meanwhile (expiry jobs, BullMQ's
        // trimming of finished jobs) runs as it would have if Kurir had kept running.
        const again = await startEmbedded(settings, `${base}-e2e`, {}, 'e2e-again');
        try {
          await settle(redis, `${base}-e2e`, 30_000);
          residual.after = await snapshotPrefix(redis, `${base}-e2e`, 0);
          residual.secondsAfter = Math.round((Date.now() - endedAt) / 1000);
          residual.waited = Date.now() - endedAt >= residual.horizonSeconds * 1000;
        } finally {
          await again.stop();
        }
      });
    }
  } finally {
    await baselines?.stop().catch(() => undefined);
    if (!args.keep) {
      const own = [...new Set([...(await scanKeys(redis, `${base}-*`)), ...(await scanKeys(redis, `{${base}-*`))])];
      for (let i = 0; i < own.length; i += 500) await redis.unlink(...own.slice(i, i + 500));
      log(`removed ${own.length} keys of ${base}`);
    }
  }

  const profiles: ProfileSummary[] = [];
  if (profileDir !== undefined) {
    for (const file of execFileSync('ls', [profileDir], { encoding: 'utf8' }).split('\n').filter((f) => f.endsWith('.cpuprofile'))) {
      profiles.push(summarizeProfile(`${profileDir}/${file}`));
    }
  }

  const report = buildReport(results, baselineMemory);
  const file = `${resultsDir}/${stamp}.json`;
  writeFileSync(file, `${JSON.stringify({ meta: { ...meta, seconds: round((performance.now() - t0) / 1000, 1) }, figures: report.figures, verdicts: report.verdicts, cpu: report.cpu, profiles, raw: results }, null, 2)}\n`);
  process.stdout.write(`\n${report.table}\n`);
  for (const summary of profiles) process.stdout.write(`\n${profileText(summary)}\n`);
  process.stdout.write(`\nresults: ${file.slice(REPO_ROOT.length)}${Object.keys(results.errors).length > 0 ? `  (failed phases: ${Object.keys(results.errors).join(', ')})` : ''}\n`);
  await redis.quit();
  if (Object.keys(results.errors).length > 0) process.exitCode = 1;
}

interface Verdict {
  figure: string;
  value: string;
  budget: string;
  met: boolean | null;
}

function buildReport(results: Results, baselineMemory: number) {
  const figures: Record<string, Figure | Record<string, unknown>> = {};
  const verdicts: Verdict[] = [];
  const rows: string[][] = [];
  const row = (...cells: string[]) => rows.push(cells);
  const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
  const verdict = (name: string, value: string, budget: string, met: boolean | null) => {
    verdicts.push({ figure: name, value, budget, met });
    return met === null ? 'n/a' : met ? 'MET' : 'MISSED';
  };

  const expressRps = figure(results.baselines?.express.runs.map((r) => r.rps) ?? [], 'req/s');
  const bullRps = figure(results.baselines?.bullmq.runs.map((r) => r.jobsPerSecond) ?? [], 'jobs/s');
  figures.bareExpressRps = expressRps;
  figures.bareExpressP50Ms = figure(results.baselines?.express.runs.map((r) => r.p50Ms) ?? [], 'ms');
  figures.bareExpressP99Ms = figure(results.baselines?.express.runs.map((r) => r.p99Ms) ?? [], 'ms');
  figures.bareBullmqJobsPerSecond = bullRps;
  // Server CPU per answered request: steadier than throughput on a machine shared with other work.
  const cpuPerRequest = (runs: { ok: number }[] | undefined, cpu: CpuReport[] | undefined, name: string) =>
    median((runs ?? []).map((r, i) => ((cpu?.[i]?.processes[name] ?? Number.NaN) * 1000) / Math.max(1, r.ok)));
  figures.cpuMsPerRequest = {
    bareExpress: round(cpuPerRequest(results.baselines?.express.runs, results.baselines?.express.cpu, 'bare-express'), 3),
    create: round(cpuPerRequest(results.api?.create.runs, results.api?.create.cpu, 'api'), 3),
    checkWrong: round(cpuPerRequest(results.api?.checkWrong.runs, results.api?.checkWrong.cpu, 'api'), 3),
    checkRight: round(cpuPerRequest(results.api?.checkRight.runs, results.api?.checkRight.cpu, 'api'), 3),
  };
  row('figure', 'median', 'p50 / p99 ms', 'runs', 'ratio', 'budget', 'verdict');
  const cpuMs = figures.cpuMsPerRequest as Record<string, number>;
  row(`bare express JSON POST (32 in flight; ${fmt(cpuMs.bareExpress ?? Number.NaN, 3)} CPU ms/req)`, `${fmt(expressRps.median)} req/s`, `${fmt(median(results.baselines?.express.runs.map((r) => r.p50Ms) ?? []), 1)} / ${fmt(median(results.baselines?.express.runs.map((r) => r.p99Ms) ?? []), 1)}`, expressRps.runs.map((r) => fmt(r)).join(' '), '', '', '');
  row(`bare BullMQ add+no-op (1 producer, concurrency ${results.baselines?.bullmq.concurrency ?? '?'})`, `${fmt(bullRps.median)} jobs/s`, '', bullRps.runs.map((r) => fmt(r)).join(' '), '', '', '');

  const closedRow = (name: string, key: string, runs: { rps: number; p50Ms: number; p99Ms: number }[] | undefined, ratios: number[] | undefined, budget: number) => {
    const rps = figure(runs?.map((r) => r.rps) ?? [], 'req/s');
    const p50 = figure(runs?.map((r) => r.p50Ms) ?? [], 'ms');
    const p99 = figure(runs?.map((r) => r.p99Ms) ?? [], 'ms');
    // The median of the per-pair ratios (each Kurir run against the bare run just before it).
    const ratio = median(ratios ?? []);
    figures[`${key}Rps`] = rps;
    figures[`${key}P50Ms`] = p50;
    figures[`${key}P99Ms`] = p99;
    figures[`${key}Ratio`] = { ...figure(ratios ?? [], '× bare express'), median: round(ratio, 3) };
    const met = Number.isFinite(ratio) ? ratio >= budget : null;
    row(name, `${fmt(rps.median)} /s`, `${fmt(p50.median, 1)} / ${fmt(p99.median, 1)}`, rps.runs.map((r) => fmt(r)).join(' '), fmt(ratio, 3), `≥ ${budget}`, verdict(name, fmt(ratio, 3), `≥ ${budget} × bare express`, met));
  };
  closedRow(`create, API role alone (${fmt(cpuMs.create ?? Number.NaN, 3)} CPU ms/req)`, 'create', results.api?.create.runs, results.api?.create.ratios, BUDGETS.createRatio);
  closedRow(`check, wrong code (${fmt(cpuMs.checkWrong ?? Number.NaN, 3)} CPU ms/req)`, 'checkWrong', results.api?.checkWrong.runs, results.api?.checkWrong.ratios, BUDGETS.checkRatio);
  closedRow(`check, right code, approves (${fmt(cpuMs.checkRight ?? Number.NaN, 3)} CPU ms/req)`, 'checkRight', results.api?.checkRight.runs, results.api?.checkRight.ratios, BUDGETS.checkRatio);

  const e2eRow = (name: string, key: string, e2e: E2eResults | undefined, budgeted: boolean) => {
    const rate = figure(e2e?.runs.map((r) => r.sustainedRate) ?? [], 'verifications/s');
    const ratio = median(e2e?.runs.map((r) => r.ratio) ?? []);
    const clean = e2e !== undefined && e2e.reconcile.lost === 0 && e2e.reconcile.duplicates === 0 && e2e.reconcile.undelivered === 0;
    figures[`${key}SustainedRate`] = rate;
    figures[`${key}Ratio`] = { ...figure(e2e?.runs.map((r) => r.ratio) ?? [], '× bare BullMQ'), median: round(ratio, 4) };
    if (e2e !== undefined) figures[`${key}Reconcile`] = { ...e2e.reconcile, probeCapacity: round(e2e.probe.capacity, 1) };
    const sustainedSteps = e2e?.runs.flatMap((r) => r.steps.filter((s) => s.sustained && s.rate === r.sustainedRate)) ?? [];
    const met = e2e === undefined || !Number.isFinite(ratio) ? null : ratio >= BUDGETS.e2eRatio && clean;
    const cpuPer = e2e === undefined ? '—' : Object.entries(e2e.cpuMsPerVerification).filter(([k]) => k !== 'bench').map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ');
    row(
      `${name} (lost ${e2e?.reconcile.lost ?? '—'}, dup ${e2e?.reconcile.duplicates ?? '—'}, undelivered ${e2e?.reconcile.undelivered ?? '—'}; CPU ms/verification: ${cpuPer})`,
      `${fmt(rate.median)} /s`,
      `${fmt(median(sustainedSteps.map((s) => s.latencyP50Ms)))} / ${fmt(median(sustainedSteps.map((s) => s.latencyP99Ms)))}`,
      rate.runs.map((r) => fmt(r)).join(' '),
      fmt(ratio, 4),
      budgeted ? `≥ ${BUDGETS.e2eRatio}, 0 lost/dup` : '(reported)',
      budgeted ? verdict(name, fmt(ratio, 4), `≥ ${BUDGETS.e2eRatio} × bare BullMQ, 0 lost, 0 duplicates`, met) : '',
    );
  };
  e2eRow('end-to-end sustained, one process', 'e2eEmbedded', results.e2e, true);
  e2eRow('end-to-end sustained, split processes', 'e2eSplit', results.split, false);

  const fb = results.fallback;
  const p50 = figure(fb?.runs.map((r) => r.lateness.p50Ms) ?? [], 'ms');
  const p99 = figure(fb?.runs.map((r) => r.lateness.p99Ms) ?? [], 'ms');
  const maxLate = figure(fb?.runs.map((r) => r.lateness.maxMs) ?? [], 'ms');
  figures.fallbackLatenessP50Ms = p50;
  figures.fallbackLatenessP99Ms = p99;
  figures.fallbackLatenessMaxMs = maxLate;
  figures.fallbackDecisionP99Ms = figure(fb?.runs.map((r) => r.decisionLateness.p99Ms) ?? [], 'ms');
  figures.fallbackPeakArmed = figure(fb?.runs.map((r) => r.peakArmed) ?? [], 'timers');
  // The warm-up run is not in the figure, but a lost or duplicate send in it counts like any other.
  const fbClean = fb === undefined ? undefined : [fb.warmup, ...fb.runs].every((r) => r.missing === 0 && r.whatsapp.lost + r.whatsapp.duplicates + r.sms.lost + r.sms.duplicates === 0);
  row(
    `fallback lateness, ${fb?.runs[0]?.count ?? '—'} timers at ${fb?.rate ?? '—'}/s (peak ${fmt(median(fb?.runs.map((r) => r.peakArmed) ?? []))} armed; max ${fmt(maxLate.median)} ms; decided p99 ${fmt((figures.fallbackDecisionP99Ms as Figure).median)} ms; a warm-up run of ${fb?.warmup.count ?? '—'} before them: p99 ${fb?.warmup.lateness.p99Ms ?? '—'} ms)`,
    `p99 ${fmt(p99.median)} ms`,
    `${fmt(p50.median)} / ${fmt(p99.median)}`,
    p99.runs.map((r) => fmt(r)).join(' '),
    '',
    `p99 ≤ ${BUDGETS.fallbackP99Ms} ms`,
    verdict('fallback lateness p99', `${fmt(p99.median)} ms${fbClean === false ? ' (lost/duplicate sends)' : ''}`, `≤ ${BUDGETS.fallbackP99Ms} ms`, fb === undefined ? null : p99.median <= BUDGETS.fallbackP99Ms && fbClean === true),
  );

  const queued = figure(results.api?.create.memory.prefixBytesPerVerification ?? [], 'B');
  const queuedUsed = figure(results.api?.create.memory.usedMemoryPerVerification ?? [], 'B');
  const sent = figure(results.memory?.batches.map((b) => b.bytesPerVerification) ?? [], 'B');
  const sentUsed = figure(results.memory?.batches.map((b) => b.usedMemoryPerVerification) ?? [], 'B');
  figures.memoryQueuedBytes = queued;
  figures.memoryQueuedUsedMemoryBytes = queuedUsed;
  figures.memoryInflightBytes = sent;
  figures.memoryInflightUsedMemoryBytes = sentUsed;
  // used_memory grows by the event streams too, which the budget leaves out (they are capped per
  // queue, not per verification): the verdict compares it with their growth taken off.
  const sentUsedNoStreams = figure(results.memory?.batches.map((b) => b.usedMemoryPerVerification - b.eventStreamBytesPerVerification) ?? [], 'B');
  figures.memoryInflightUsedMemoryLessStreamsBytes = sentUsedNoStreams;
  const streams = results.memory?.eventStreams ?? {};
  figures.eventStreams = streams;
  row('Redis per verification, queued (API only; used_memory Δ)', `${fmt(queued.median)} B`, '', `used_memory ${fmt(queuedUsed.median)} B`, '', '', '');
  row(
    'Redis per in-flight verification, sent + timer armed (used_memory Δ, and less the event streams\' growth)',
    `${fmt(sent.median)} B`,
    '',
    `used_memory ${fmt(sentUsed.median)} B, ${fmt(sentUsedNoStreams.median)} B`,
    '',
    `≤ ${BUDGETS.inflightBytes} B`,
    verdict(
      'memory per in-flight verification',
      `${fmt(sent.median)} B (used_memory ${fmt(sentUsed.median)} B, less event streams ${fmt(sentUsedNoStreams.median)} B)`,
      `≤ ${BUDGETS.inflightBytes} B`,
      results.memory === undefined ? null : Math.max(sent.median, sentUsedNoStreams.median) <= BUDGETS.inflightBytes,
    ),
  );
  const streamText = Object.entries(streams).map(([q, s]) => `${q} ${s.length}/${fmt(s.bytes / 1024)}K`).join(', ');
  row(`BullMQ event streams, excluded above (XLEN/bytes): ${streamText || '—'}`, '', '', '', '', '', '');

  const residual = results.residual;
  if (residual !== undefined) {
    // Measured after the retention window when there is that snapshot (what really stayed), else
    // projected from the one at the end of the phase (keys that outlive the window).
    const measured = residual.after !== undefined && residual.waited === true;
    const source = measured && residual.after !== undefined ? residual.after : residual.atEnd;
    const report = residualReport(source, residual.completions, measured, BUDGETS.completions);
    const n = Math.max(1, residual.completions);
    const perCompletion = (group: ResidualGroup) =>
      Object.values(report.byKind).filter((k) => k.group === group).reduce((a, k) => a + k.bytesPerCompletion, 0);
    figures.residual = {
      completions: residual.completions,
      measuredAfterRetention: measured,
      secondsAfter: residual.secondsAfter,
      leftBytes: Math.round((perCompletion('grows') + perCompletion('jobs') + perCompletion('fixed')) * n),
      sendLimitWindowBytes: Math.round(perCompletion('window') * n),
      eventStreamBytes: report.eventStreamBytes,
      projectedAt100k: report.verdictBytes,
      projectedAt100kByGroup: report.projected,
      baselineUsedMemory: baselineMemory,
      byKind: report.byKind,
    };
    const limit = BUDGETS.flatTolerance * baselineMemory;
    const how = measured ? `measured ${residual.secondsAfter} s after` : 'projected from TTLs and due times (not waited)';
    const mib = (bytes: number) => `${fmt(bytes / 1024 / 1024, 2)} MiB`;
    const kinds = (group: ResidualGroup) =>
      Object.entries(report.byKind)
        .filter(([, k]) => k.group === group)
        .sort((a, b) => b[1].projectedBytes - a[1].projectedBytes)
        .map(([name, k]) => `${name} ${mib(k.projectedBytes)}${k.lastsMs > 0 ? ` (${fmt(k.lastsMs / 3_600_000, 1)} h)` : ''}`)
        .join(', ');
    row(
      `Redis left after ${residual.completions} completions (${how}): ${fmt((perCompletion('grows') + perCompletion('jobs')) * n / 1024)} KiB that grows + ${fmt(report.projected.fixed / 1024)} KiB fixed → at 100k`,
      mib(report.verdictBytes),
      '',
      `${fmt(perCompletion('grows') + perCompletion('jobs'), 1)} B/completion`,
      '',
      `≤ ${fmt(limit / 1024)} KiB (10 % of ${fmt(baselineMemory / 1024 / 1024, 1)} MiB)`,
      verdict('memory flat after 100k completions', `${mib(report.verdictBytes)} left at 100k (${how})`, '≤ 10 % of baseline used_memory', report.verdictBytes <= limit),
    );
    row(`  of which, at 100k: ${kinds('grows') || 'nothing that grows'}${kinds('jobs') === '' ? '' : `; jobs: ${kinds('jobs')}`}; fixed: ${kinds('fixed') || '—'}`, '', '', '', '', '', '');
    row(
      `  send-limit windows, kept for their window (not in the verdict; ${fmt(perCompletion('window'), 1)} B/completion): ${kinds('window') || '—'}`,
      mib(report.projected.window),
      '', '', '', '', '',
    );
    row(`  BullMQ event streams, capped at ~${EVENT_STREAM_MAX_LEN} entries per queue (not in the verdict)`, `${fmt(report.eventStreamBytes / 1024)} KiB`, '', '', '', '', '');
  }

  const cpu: Record<string, unknown> = {};
  const cpuTotal = (reports: { processes: Record<string, number>; redis: number; bench: number; wallSeconds: number }[] | undefined) => {
    if (reports === undefined || reports.length === 0) return undefined;
    const out: Record<string, number> = { wallSeconds: 0, redis: 0, bench: 0 };
    for (const r of reports) {
      out.wallSeconds = (out.wallSeconds ?? 0) + r.wallSeconds;
      out.redis = (out.redis ?? 0) + r.redis;
      out.bench = (out.bench ?? 0) + r.bench;
      for (const [name, seconds] of Object.entries(r.processes)) out[name] = (out[name] ?? 0) + seconds;
    }
    for (const key of Object.keys(out)) out[key] = round(out[key] as number, 2);
    return out;
  };
  cpu.bareExpress = cpuTotal(results.baselines?.express.cpu);
  cpu.bareBullmq = cpuTotal(results.baselines?.bullmq.cpu);
  cpu.create = cpuTotal(results.api?.create.cpu);
  cpu.checkWrong = cpuTotal(results.api?.checkWrong.cpu);
  cpu.checkRight = cpuTotal(results.api?.checkRight.cpu);
  cpu.e2eEmbedded = cpuTotal(results.e2e === undefined ? undefined : [results.e2e.cpu]);
  cpu.e2eSplit = cpuTotal(results.split === undefined ? undefined : [results.split.cpu]);
  cpu.fallback = cpuTotal(results.fallback === undefined ? undefined : [results.fallback.cpu]);
  cpu.e2eEmbeddedMsPerVerification = results.e2e?.cpuMsPerVerification;
  cpu.e2eSplitMsPerVerification = results.split?.cpuMsPerVerification;

  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' │ ');
  const table = [line(rows[0] ?? []), widths.map((w) => '─'.repeat(w)).join('─┼─'), ...rows.slice(1).map(line)];
  table.push('', 'CPU seconds (wall seconds of the measured windows; Redis = the whole server):');
  for (const [name, value] of Object.entries(cpu)) {
    if (value === undefined) continue;
    table.push(`  ${name.padEnd(32)} ${Object.entries(value as Record<string, number>).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  table.push('', 'Budgets:');
  for (const v of verdicts) table.push(`  ${v.met === null ? 'n/a   ' : v.met ? 'MET   ' : 'MISSED'} ${v.figure}: ${v.value} (budget ${v.budget})`);
  return { figures, verdicts, cpu, table: table.join('\n') };
}

function profileText(summary: ProfileSummary): string {
  const lines = [`CPU profile ${summary.file.slice(REPO_ROOT.length)}: ${summary.busySeconds.toFixed(1)} s busy of ${summary.seconds.toFixed(1)} s`];
  lines.push('  by package: ' + summary.byPackage.slice(0, 10).map((p) => `${p.name} ${p.share}%`).join(', '));
  for (const f of summary.topFunctions.slice(0, 12)) lines.push(`  ${String(f.share).padStart(5)}%  ${f.name}  ${f.where}`);
  return lines.join('\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
