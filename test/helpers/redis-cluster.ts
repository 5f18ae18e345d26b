import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';

/**
 * A throw-away 3-primary Redis Cluster started from the `redis-server` binary on this machine,
 * for the tests that prove Kurir runs on a Cluster (test/cluster/). Each node gets a port from a
 * random free range (and its cluster bus port, port + 10000), its own nodes.conf in a private
 * temporary directory, no persistence and `noeviction` (what Kurir requires). The slots are
 * assigned by `redis-cli --cluster create`, then every node is polled until it reports
 * `cluster_state:ok` and knows all three primaries. `close()` kills the nodes and deletes the
 * directory, whatever happened before.
 */
export interface LocalRedisCluster {
  readonly ports: readonly number[];
  /** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`: the value of `REDIS_CLUSTER_NODES`. */
  readonly nodesList: string;
  readonly dir: string;
  /** A fresh cluster client (fails fast); the caller quits it. */
  client(): Cluster;
  /** A plain connection to one node (for CLUSTER KEYSLOT, INFO…); the caller quits it. */
  node(port: number): Redis;
  /** Sends a signal to one node's process (SIGSTOP/SIGCONT to freeze and thaw it, SIGKILL to lose it). */
  signal(port: number, signal: NodeJS.Signals): void;
  /**
   * Starts a node again (after SIGKILL) on the same port and nodes.conf: it rejoins with its
   * slots, empty (no persistence). Resolves once every node reports cluster_state:ok again.
   */
  restart(port: number): Promise<void>;
  /** Stops every node (SIGKILL) and removes the directory. Idempotent. */
  close(): Promise<void>;
  /** The nodes' and redis-cli's output, for failure messages. */
  output(): string;
}

const NODE_COUNT = 3;
const BUS_OFFSET = 10_000;
const READY_TIMEOUT_MS = 20_000;

/**
 * Why a cluster cannot be started on this machine (`redis-server` or `redis-cli --cluster`
 * missing), or undefined when it can. Tests skip with this text as a visible notice.
 */
export function redisClusterUnavailable(): string | undefined {
  const server = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (server.error !== undefined || server.status !== 0) return 'redis-server is not installed: the Redis Cluster tests are skipped';
  // `--cluster help` exits 1 on every version; what matters is that the manager is there.
  const cli = spawnSync('redis-cli', ['--cluster', 'help'], { encoding: 'utf8' });
  if (cli.error !== undefined || !/\bcreate\b/.test(`${cli.stdout}${cli.stderr}`)) {
    return 'redis-cli --cluster is not available: the Redis Cluster tests are skipped';
  }
  return undefined;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port in 20000–40000 whose NODE_COUNT ports and their bus ports are all free. */
async function freeRange(): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const base = randomInt(20_000, 40_000 - NODE_COUNT);
    const ports = Array.from({ length: NODE_COUNT }, (_, i) => base + i);
    const checks = await Promise.all(ports.flatMap((port) => [portFree(port), portFree(port + BUS_OFFSET)]));
    if (checks.every(Boolean)) return ports;
  }
  throw new Error('no free port range for a local Redis Cluster');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function probe(port: number): Redis {
  const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, enableOfflineQueue: false });
  client.on('error', () => undefined);
  return client;
}

async function until(what: string, check: () => Promise<boolean>, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`local redis cluster: ${what} (last error: ${String(lastError)})\n${output()}`);
    await delay(50);
  }
}

function runCli(args: string[], lines: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const cli = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [cli.stdout, cli.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter((line) => line !== '').map((line) => `[cli] ${line}`)));
    }
    cli.once('error', reject);
    cli.once('exit', (code) => resolve(code ?? -1));
  });
}

export async function startRedisCluster(): Promise<LocalRedisCluster> {
  const ports = await freeRange();
  const dir = await mkdtemp(join(tmpdir(), 'kurir-redis-cluster-'));
  const lines: string[] = [];
  const children = new Map<number, ChildProcess>();
  const output = () => lines.slice(-60).join('\n');
  let closed = false;

  // Should the test process die without its after() hooks, the nodes must not outlive it.
  const killAll = () => {
    for (const child of children.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killAll);

  function spawnNode(port: number): void {
    const child = spawn(
      'redis-server',
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '5000',
        '--dir', dir,
        '--save', '',
        '--appendonly', 'no',
        '--maxmemory-policy', 'noeviction',
        '--protected-mode', 'no',
        '--daemonize', 'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.set(port, child);
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter((line) => line !== '').map((line) => `[${port}] ${line}`)));
    }
  }

  async function answersPing(port: number): Promise<void> {
    await until(`node ${port} did not answer PING`, async () => {
      const client = probe(port);
      try {
        await client.connect();
        return (await client.ping()) === 'PONG';
      } finally {
        client.disconnect();
      }
    }, output);
  }

  async function clusterOk(): Promise<void> {
    for (const port of ports) {
      await until(`node ${port} never reported cluster_state:ok`, async () => {
        const client = probe(port);
        try {
          await client.connect();
          const info = await client.cluster('INFO');
          return /^cluster_state:ok\r?$/m.test(info) && /^cluster_known_nodes:3\r?$/m.test(info) && /^cluster_slots_ok:16384\r?$/m.test(info);
        } finally {
          client.disconnect();
        }
      }, output);
    }
  }

  function exited(child: ChildProcess): Promise<void> {
    return new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    const all = [...children.values()];
    // A frozen (SIGSTOP) node still dies on SIGKILL.
    killAll();
    await Promise.all(all.map(exited));
    process.removeListener('exit', killAll);
    await rm(dir, { recursive: true, force: true });
  }

  try {
    for (const port of ports) spawnNode(port);
    for (const port of ports) await answersPing(port);
    const code = await runCli(
      ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'],
      lines,
    );
    if (code !== 0) throw new Error(`redis-cli --cluster create exited with ${code}\n${output()}`);
    await clusterOk();
  } catch (error) {
    await close();
    throw error;
  }

  const nodes = ports.map((port) => ({ host: '127.0.0.1', port }));
  return {
    ports,
    nodesList: ports.map((port) => `127.0.0.1:${port}`).join(','),
    dir,
    client: () => new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 } }),
    node: (port) => new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 }),
    signal(port, signal) {
      const child = children.get(port);
      if (child === undefined) throw new Error(`no cluster node on port ${port}`);
      child.kill(signal);
    },
    async restart(port) {
      const child = children.get(port);
      if (child === undefined) throw new Error(`no cluster node on port ${port}`);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited(child);
      spawnNode(port);
      await answersPing(port);
      await clusterOk();
    },
    close,
    output,
  };
}

/**
 * Redis Cluster's key → slot mapping (cluster spec, "Key distribution model"): CRC16-CCITT
 * (XMODEM: polynomial 0x1021, initial value 0, no reflection) of the key, or of its hash tag —
 * the bytes between the first `{` and the first `}` after it, when there is at least one —
 * modulo 16384. Computed over the key's UTF-8 bytes.
 */
export function keySlot(key: string | Buffer): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i += 1) {
    crc ^= (bytes[i] as number) << 8;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
