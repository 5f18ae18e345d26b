import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/**
 * The processes a benchmark starts: Kurir's own composition roots (`api/main.ts`, `main.ts`, …)
 * and the bench's bare baselines, each as `node --import tsx <script>` in the repository root,
 * exactly as `npm run start:*` runs them. Only processes started here are ever signalled, by pid.
 */

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROFILE_PRELOAD = fileURLToPath(new URL('../children/cpu-profile.preload.ts', import.meta.url));

/** Settings of the bench's own shell must not leak into a role: every Kurir variable comes from the bench. */
const NOT_INHERITED = /^(KURIR_|YCLOUD_|SIMULATOR_|WORKER_|LOG_|PORT$|REDIS_|NODE_ENV$|NODE_OPTIONS$|NODE_TEST_CONTEXT$|BENCH_)/;

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on every Linux we run on). */
const CLOCK_TICKS = 100;

export interface StartOptions {
  name: string;
  /** Script path relative to the repository root. */
  script: string;
  env: Record<string, string>;
  /** Write a V8 CPU profile of the measured part to this file (see cpu-profile.preload.ts). */
  cpuProfile?: string | undefined;
  /** Open an IPC channel (bench-owned children only). */
  ipc?: boolean;
}

/** A running child: its pid, the tail of its stderr, its CPU time, and a graceful stop. */
export class BenchProcess {
  private readonly stderrTail: string[] = [];
  /** IPC messages not yet taken by {@link ask}. */
  private readonly inbox: { type?: string; error?: string }[] = [];
  private readonly inboxListeners = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private ended = false;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly cpuProfile: string | undefined,
  ) {
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line !== '') this.stderrTail.push(line);
      if (this.stderrTail.length > 60) this.stderrTail.splice(0, this.stderrTail.length - 60);
    });
    child.on('message', (raw: unknown) => {
      this.inbox.push(raw as { type?: string });
      for (const listener of [...this.inboxListeners]) listener();
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.ended = true;
        for (const listener of [...this.inboxListeners]) listener();
        resolve({ code, signal });
      });
    });
  }

  /** Resolves with the first IPC message of `type` (already received or still to come). */
  takeMessage<T>(type: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const index = this.inbox.findIndex((m) => m.type === type || m.type === 'error');
        if (index >= 0) {
          const [message] = this.inbox.splice(index, 1);
          done();
          if (message?.type === 'error') reject(new Error(`${this.name}: ${message.error ?? 'failed'}`));
          else resolve(message as T);
        } else if (this.ended) {
          done();
          reject(new Error(`${this.name} exited while waiting for "${type}"\n${this.stderr()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no "${type}" within ${timeoutMs} ms\n${this.stderr()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.inboxListeners.delete(check);
      };
      this.inboxListeners.add(check);
      check();
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} has no pid`);
    return this.child.pid;
  }

  get running(): boolean {
    return !this.ended;
  }

  stderr(): string {
    return this.stderrTail.join('\n');
  }

  /** User + system CPU seconds the process has used so far (from /proc/<pid>/stat). */
  cpuSeconds(): number {
    return procCpuSeconds(this.pid);
  }

  /** Starts the CPU profile of the measured part (no-op without `cpuProfile`). */
  startProfile(): void {
    if (this.cpuProfile !== undefined && this.running) this.child.kill('SIGUSR2');
  }

  /** SIGTERM (Kurir closes gracefully), SIGKILL if it is still running after `graceMs`. */
  async stop(graceMs = 8000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), delay(graceMs).then(() => false)]);
    if (!done && this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

export function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may contain spaces and parentheses: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of the full line (utime, stime) are 11 and 12 after the name.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** This process's own CPU seconds (user + system). */
export function selfCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!NOT_INHERITED.test(name)) base[name] = value;
  return { ...base, ...env };
}

export function startProcess(options: StartOptions): BenchProcess {
  const args = ['--import', 'tsx'];
  const env = { ...options.env };
  if (options.cpuProfile !== undefined) {
    args.push('--import', PROFILE_PRELOAD);
    env.BENCH_CPU_PROFILE = options.cpuProfile;
  }
  args.push(options.script);
  // stdout carries the JSON logs: discarded (the cost of writing them stays in the measurement,
  // the cost of reading them does not burden the load generator sharing these two cores).
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: childEnv(env),
    stdio: options.ipc === true ? ['ignore', 'ignore', 'pipe', 'ipc'] : ['ignore', 'ignore', 'pipe'],
  });
  return new BenchProcess(options.name, child, options.cpuProfile);
}

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Waits until `GET url` answers 200; fails early with the process's stderr if it died. */
export async function waitForHttp(url: string, owner: BenchProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!owner.running) throw new Error(`${owner.name} exited before ${url} answered:\n${owner.stderr()}`);
    try {
      const response = await fetch(url);
      await response.arrayBuffer();
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await delay(50);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (${last})\n${owner.stderr()}`);
}

/** Sends one IPC message and resolves with the child's first answer of type `reply`. */
export function ask<T>(child: BenchProcess, message: Record<string, unknown>, reply: string, timeoutMs = 120_000): Promise<T> {
  child.child.send(message);
  return child.takeMessage<T>(reply, timeoutMs);
}
