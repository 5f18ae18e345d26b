import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../processes.js';

/**
 * A private `redis-server` for one chaos test file: its own port and data directory, AOF on with
 * `appendfsync always` (what the reliability guarantees assume), `noeviction`, no RDB snapshots.
 * It runs as a child of the test so the test can SIGKILL or SIGTERM it and start it again on the
 * same port and directory, where it reloads the AOF — a Redis restart as an operator sees one.
 */
export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** True while the server process runs. */
  readonly running: boolean;
  /** Stops the server with `signal` and waits until it has exited. */
  stop(signal: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** Starts it again on the same port and directory; resolves once it accepts commands (AOF loaded). */
  start(): Promise<void>;
  /** stop + start; resolves with how long Redis was unreachable (ms). */
  restart(signal: 'SIGKILL' | 'SIGTERM'): Promise<number>;
  /** A fresh inspection connection (fails fast; the caller quits it). */
  client(): Redis;
  /** Stops the server (SIGKILL) and removes its directory. Idempotent. */
  close(): Promise<void>;
  /** The server's own output, for failure messages. */
  output(): string;
}

const READY_TIMEOUT_MS = 15_000;

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'kurir-chaos-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  const lines: string[] = [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let closed = false;

  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'yes',
    '--appendfsync', 'always',
    '--dir', dir,
    '--maxmemory-policy', 'noeviction',
    '--daemonize', 'no',
    '--protected-mode', 'no',
  ];

  async function waitReady(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      const probe = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, enableOfflineQueue: false });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        // PING answers LOADING while the AOF is replayed; a write proves the load is over.
        await probe.set('chaos:probe', '1', 'PX', 1000);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`private redis on ${port} not ready: ${String(error)}\n${lines.slice(-20).join('\n')}`);
      } finally {
        probe.disconnect();
      }
      if (child?.exitCode !== null && child?.exitCode !== undefined) {
        throw new Error(`private redis exited with ${child.exitCode}\n${lines.slice(-20).join('\n')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  async function start(): Promise<void> {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) throw new Error('private redis already running');
    const started = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    for (const stream of [started.stdout, started.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter((line) => line !== '')));
    }
    exited = new Promise<void>((resolve) => started.once('exit', () => resolve()));
    await waitReady();
  }

  async function stop(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const current = child;
    if (current === undefined || current.exitCode !== null || current.signalCode !== null) return;
    current.kill(signal);
    await exited;
  }

  await start();
  return {
    port,
    url,
    dir,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    stop,
    start,
    async restart(signal) {
      const began = Date.now();
      await stop(signal);
      await start();
      return Date.now() - began;
    },
    client: () => new Redis(url, { maxRetriesPerRequest: 1 }),
    async close() {
      if (closed) return;
      closed = true;
      await stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
    output: () => lines.slice(-40).join('\n'),
  };
}
