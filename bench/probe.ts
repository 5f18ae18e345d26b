/**
 * The before/after of one hot-path fix, in seconds rather than the bench's minutes: CPU per
 * request of the API role alone (create, then wrong-code and right-code checks) and the Redis
 * server's time per request by command (`INFO commandstats`), with an optional CPU profile.
 *
 *   node --import tsx bench/probe.ts [--seconds=4] [--only=create] [--profile=<dir>] [--profile-from=create|check|right]
 *   (--profile writes <dir>/api-only.cpuprofile of the measured part, from the create load, from the checks
 *   on, or from the right-code checks on)
 *
 * CPU per request is the figure to compare: throughput moves with whatever else the machine
 * does, CPU per request much less. Throughput figures are not budgets here (`npm run bench` is).
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { closedLoop } from './lib/closed-loop.js';
import { AUTH, createBody, deliverableNumber, newBasePrefix, openCodes, startApiOnly, type KurirSettings } from './lib/kurir.js';
import { scanKeys } from './lib/redis-memory.js';

const CONNECTIONS = 32;

function option(name: string): string | undefined {
  return process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
}

/** Microseconds Redis spent per command, summed over every client (the probe's keys are the only load). */
async function commandStats(redis: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const stats = new Map<string, { calls: number; usec: number }>();
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (match !== null) stats.set(match[1] ?? '', { calls: Number(match[2]), usec: Number(match[3]) });
  }
  return stats;
}

function describeRedis(before: Map<string, { calls: number; usec: number }>, after: Map<string, { calls: number; usec: number }>, n: number): string {
  const rows: { name: string; calls: number; usec: number }[] = [];
  for (const [name, end] of after) {
    const start = before.get(name) ?? { calls: 0, usec: 0 };
    const calls = end.calls - start.calls;
    if (calls > 0 && name !== 'info') rows.push({ name, calls: calls / n, usec: (end.usec - start.usec) / n });
  }
  rows.sort((a, b) => b.usec - a.usec);
  const total = rows.reduce((sum, row) => sum + row.usec, 0);
  return `Redis ${total.toFixed(0)} µs/req in commands: ${rows.map((r) => `${r.name} ${r.calls.toFixed(2)}×/${r.usec.toFixed(0)}µs`).join(', ')}`;
}

async function main(): Promise<void> {
  const seconds = Number(option('seconds') ?? 4);
  const createOnly = option('only') === 'create';
  const profile = option('profile');
  const profileFrom = option('profile-from') ?? 'create';
  if (profileFrom !== 'create' && profileFrom !== 'check' && profileFrom !== 'right') throw new Error('--profile-from: create, check or right');
  if (profile !== undefined) mkdirSync(profile, { recursive: true });
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const settings: KurirSettings = {
    redisUrl,
    policyFile: fileURLToPath(new URL('./bench.policy.yaml', import.meta.url)),
    logLevel: 'info',
    profileDir: profile,
  };
  const redis = new Redis(redisUrl);
  const prefix = newBasePrefix();
  const deployment = await startApiOnly(settings, prefix);
  const [api] = deployment.processes;
  if (api === undefined) throw new Error('no api process');
  const ids: string[] = [];
  const load = async (label: string, next: () => { path: string; body: string }, expectStatus: number, amount?: number) => {
    const cpuBefore = api.cpuSeconds();
    const redisBefore = await commandStats(redis);
    const result = await closedLoop({
      url: deployment.apiUrl,
      connections: CONNECTIONS,
      durationSeconds: seconds,
      amount,
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      next,
      onResponse: (status, body) => {
        if (label === 'create' && status === 202) ids.push((JSON.parse(body) as { id: string }).id);
      },
      expectStatus,
    });
    const cpuMs = ((api.cpuSeconds() - cpuBefore) * 1000) / result.ok;
    const redisLine = describeRedis(redisBefore, await commandStats(redis), result.ok);
    process.stdout.write(`${label.padEnd(12)} ${result.rps.toFixed(0).padStart(5)}/s  api ${cpuMs.toFixed(3)} CPU ms/req  p50/p99 ${result.p50Ms}/${result.p99Ms} ms  (${result.unexpected} unexpected)\n  ${redisLine}\n`);
  };
  try {
    // Warm-up: JIT, connection pools, scripts loaded.
    await closedLoop({ url: deployment.apiUrl, connections: CONNECTIONS, durationSeconds: 4, method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, next: () => ({ path: '/v1/verifications', body: createBody(deliverableNumber()) }), expectStatus: 202 });
    if (profileFrom === 'create') api.startProfile();
    await load('create', () => ({ path: '/v1/verifications', body: createBody(deliverableNumber()) }), 202);
    if (createOnly) return;
    const wrong = ids.slice(0, Math.floor(ids.length / 3));
    const right = ids.slice(wrong.length);
    let w = 0;
    if (profileFrom === 'check') api.startProfile();
    await load('check wrong', () => ({ path: `/v1/verifications/${wrong[w++ % wrong.length] ?? ''}/check`, body: JSON.stringify({ code: '000000' }) }), 200, Math.min(wrong.length * 10, 20_000));
    const codes = await openCodes(redis, prefix, right);
    const rightWithCodes = right.filter((id) => codes.has(id));
    let r = 0;
    if (profileFrom === 'right') api.startProfile();
    await load('check right', () => {
      const id = rightWithCodes[r++] ?? '';
      return { path: `/v1/verifications/${id}/check`, body: JSON.stringify({ code: codes.get(id) ?? '000000' }) };
    }, 200, rightWithCodes.length);
  } finally {
    await deployment.stop();
    // The store's keys start with the prefix, BullMQ's with `{<prefix>-<queue>}`.
    const keys = [...new Set([...(await scanKeys(redis, `${prefix}*`)), ...(await scanKeys(redis, `{${prefix}*`))])];
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
    redis.disconnect();
  }
}

await main();
