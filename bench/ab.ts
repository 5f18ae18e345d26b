/**
 * Before/after of a hot-path change on a noisy machine: runs `bench/probe.ts` on another commit
 * (a temporary git worktree) and on this working tree in alternating rounds, A B B A …, so that
 * a slow or fast minute falls on both sides, and reports each figure's medians and the median of
 * the per-round ratios (B ÷ A) of CPU per request.
 *
 *   node --import tsx bench/ab.ts --base=<commit> [--rounds=6] [--seconds=4] [--only=create]
 *
 * Why rounds: on a shared 2-core VM the same code's CPU per request moves by ±25 % within
 * minutes (BENCHMARKS.md, run N), so one probe of each side shows nothing under that. Even
 * rounds are no proof: 6 of 6 rounds lower has come from drift alone (BENCHMARKS.md, runs O and
 * P), so confirm a gain by timing the changed step in isolation too. Every probe uses a fresh
 * key prefix and removes it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './lib/processes.js';
import { median } from './lib/stats.js';

const FIGURE_LINE = /^(create|check wrong|check right)\s+(\d+)\/s\s+api ([\d.]+) CPU ms\/req/;

function option(name: string): string | undefined {
  return process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function run(command: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')} exited with ${code}`))));
  });
}

/** One probe: CPU ms per request of each figure it printed. */
async function probe(cwd: string, probeArgs: string[]): Promise<Map<string, number>> {
  const out = await run(process.execPath, ['--import', 'tsx', 'bench/probe.ts', ...probeArgs], cwd);
  const figures = new Map<string, number>();
  for (const line of out.split('\n')) {
    const match = FIGURE_LINE.exec(line);
    if (match?.[1] !== undefined && match[3] !== undefined) figures.set(match[1], Number(match[3]));
  }
  if (figures.size === 0) throw new Error(`probe in ${cwd} printed no figure:\n${out}`);
  return figures;
}

async function main(): Promise<void> {
  const base = option('base');
  if (base === undefined) throw new Error('--base=<commit> is required');
  const rounds = Number(option('rounds') ?? 6);
  const probeArgs = [`--seconds=${option('seconds') ?? 4}`, ...(option('only') === 'create' ? ['--only=create'] : [])];
  const worktree = join(mkdtempSync(join(tmpdir(), 'kurir-ab-')), 'base');
  await run('git', ['worktree', 'add', '--detach', worktree, base], REPO_ROOT);
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(worktree, 'node_modules'));
  const sides = { a: new Map<string, number[]>(), b: new Map<string, number[]>() };
  const ratios = new Map<string, number[]>();
  try {
    for (let round = 0; round < rounds; round += 1) {
      // A B, then B A: a drift within the round weighs on both sides alike.
      const order: ('a' | 'b')[] = round % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
      const got: Partial<Record<'a' | 'b', Map<string, number>>> = {};
      for (const side of order) got[side] = await probe(side === 'a' ? worktree : REPO_ROOT, probeArgs);
      for (const [name, b] of got.b ?? []) {
        const a = got.a?.get(name);
        if (a === undefined) continue;
        for (const [side, value] of [['a', a], ['b', b]] as const) sides[side].set(name, [...(sides[side].get(name) ?? []), value]);
        ratios.set(name, [...(ratios.get(name) ?? []), b / a]);
      }
      process.stdout.write(`round ${round + 1}/${rounds}: ${[...ratios].map(([name, values]) => `${name} ${values.at(-1)?.toFixed(3)}`).join(', ')}\n`);
    }
  } finally {
    await run('git', ['worktree', 'remove', '--force', worktree], REPO_ROOT).catch(() => undefined);
    rmSync(join(worktree, '..'), { recursive: true, force: true });
  }
  process.stdout.write(`\nCPU ms per request, median of ${rounds} rounds — A = ${base}, B = this working tree:\n`);
  for (const [name, values] of ratios) {
    const lower = values.filter((ratio) => ratio < 1).length;
    process.stdout.write(
      `  ${name.padEnd(12)} A ${median(sides.a.get(name) ?? []).toFixed(3)}  B ${median(sides.b.get(name) ?? []).toFixed(3)}  B÷A ${median(values).toFixed(3)} (lower in ${lower} of ${values.length})\n`,
    );
  }
}

await main();
