/**
 * Redis commands per operation, by watching `MONITOR` while Kurir serves a few hundred requests:
 * the round trips a create, a check and a whole end-to-end verification cost (commands sent by
 * Kurir's connections, one round trip each unless pipelined) and what runs inside its Lua
 * scripts. The before/after of "fewer Redis round trips per request".
 *
 *   node --import tsx bench/count-commands.ts [--n=200]
 *
 * Only commands that name the bench's own key prefix are counted (other users of the same
 * Redis are ignored). MONITOR slows Redis down: this counts, it does not time.
 */
import { Redis } from 'ioredis';
import { fileURLToPath } from 'node:url';
import { closedLoop } from './lib/closed-loop.js';
import { AUTH, StateTracker, createBody, deliverableNumber, newBasePrefix, openCodes, startApiOnly, startEmbedded, type KurirSettings } from './lib/kurir.js';
import { scanKeys } from './lib/redis-memory.js';

interface Tally {
  calls: number;
  lua: number;
  byCommand: Map<string, number>;
  luaByCommand: Map<string, number>;
}

function newTally(): Tally {
  return { calls: 0, lua: 0, byCommand: new Map(), luaByCommand: new Map() };
}

async function watch(url: string, prefix: string) {
  // monitor() opens a connection of its own; the one it is called on must be closed too, or the
  // process never exits.
  const client = new Redis(url);
  const monitor = await client.monitor();
  let tally = newTally();
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (!args.some((arg) => arg.includes(prefix))) return;
    const name = (args[0] ?? '').toLowerCase();
    if (source === 'lua') {
      tally.lua += 1;
      tally.luaByCommand.set(name, (tally.luaByCommand.get(name) ?? 0) + 1);
    } else {
      tally.calls += 1;
      tally.byCommand.set(name, (tally.byCommand.get(name) ?? 0) + 1);
    }
  });
  return {
    take(): Tally {
      const taken = tally;
      tally = newTally();
      return taken;
    },
    close: () => {
      monitor.disconnect();
      client.disconnect();
    },
  };
}

function print(label: string, tally: Tally, n: number): void {
  const per = (count: number) => (count / n).toFixed(2);
  const list = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([c, k]) => `${c} ${per(k)}`).join(', ');
  process.stdout.write(`${label}: ${per(tally.calls)} commands sent per operation (${list(tally.byCommand)})\n`);
  process.stdout.write(`${' '.repeat(label.length)}  ${per(tally.lua)} inside Lua (${list(tally.luaByCommand)})\n`);
}

async function main(): Promise<void> {
  const n = Number(process.argv.find((a) => a.startsWith('--n='))?.slice(4) ?? 200);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const settings: KurirSettings = { redisUrl, policyFile: fileURLToPath(new URL('./bench.policy.yaml', import.meta.url)), logLevel: 'warn', profileDir: undefined };
  const redis = new Redis(redisUrl);
  const base = newBasePrefix();
  try {
    // API alone: create, check (wrong), check (right).
    const api = await startApiOnly(settings, `${base}-api`);
    const monitor = await watch(redisUrl, base);
    const ids: string[] = [];
    const load = (next: () => { path: string; body: string }, onResponse?: (status: number, body: string) => void) =>
      closedLoop({ url: api.apiUrl, connections: 4, durationSeconds: 0, amount: n, method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, next, onResponse, expectStatus: 0 });
    await load(() => ({ path: '/v1/verifications', body: createBody(deliverableNumber()) }));
    monitor.take();
    await load(
      () => ({ path: '/v1/verifications', body: createBody(deliverableNumber()) }),
      (status, body) => status === 202 && ids.push((JSON.parse(body) as { id: string }).id),
    );
    print('create', monitor.take(), n);
    let i = 0;
    await load(() => ({ path: `/v1/verifications/${ids[i++ % ids.length]}/check`, body: '{"code":"0000000000"}' }));
    print('check, wrong code', monitor.take(), n);
    const codes = await openCodes(redis, `${base}-api`, ids);
    if (codes.size !== ids.length) throw new Error(`${ids.length - codes.size} verifications have no record to open their code from`);
    monitor.take();
    let j = 0;
    await load(() => {
      const id = ids[j++ % ids.length] as string;
      return { path: `/v1/verifications/${id}/check`, body: JSON.stringify({ code: codes.get(id) }) };
    });
    print('check, right code', monitor.take(), n);
    await api.stop();

    // Everything in one process: one verification from create to delivered, every role's commands.
    const all = await startEmbedded(settings, `${base}-e2e`);
    const tracker = new StateTracker(redis, `${base}-e2e`, 'd1:st', new Set(['delivered']));
    const warm: string[] = [];
    const e2eLoad = (into: string[]) =>
      closedLoop({
        url: all.apiUrl, connections: 4, durationSeconds: 0, amount: n, method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' },
        next: () => ({ path: '/v1/verifications', body: createBody(deliverableNumber()) }),
        onResponse: (status, body) => {
          if (status !== 202) return;
          const id = (JSON.parse(body) as { id: string }).id;
          into.push(id);
          tracker.watch(id);
        },
        expectStatus: 202,
      });
    await e2eLoad(warm);
    await tracker.drained(30_000);
    // The tracker's own polling names the prefix too: stop it while counting.
    tracker.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    monitor.take();
    const counted: string[] = [];
    const started = Date.now();
    await e2eLoad(counted);
    // Wait for delivery by time (no polling during the count): receipts come ~2 × 150 ms later.
    while (Date.now() - started < 4000) await new Promise((resolve) => setTimeout(resolve, 100));
    const tally = monitor.take();
    for (const id of counted) tracker.watch(id);
    const delivered = await tracker.drained(10_000);
    tracker.stop();
    print(`end-to-end verification${delivered ? '' : ' (NOT all delivered!)'}`, tally, n);
    await all.stop();
    await monitor.close();
  } finally {
    const own = [...(await scanKeys(redis, `${base}-*`)), ...(await scanKeys(redis, `{${base}-*`))];
    for (let k = 0; k < own.length; k += 500) await redis.unlink(...own.slice(k, k + 500));
    await redis.quit();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
