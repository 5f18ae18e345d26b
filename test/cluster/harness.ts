import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis } from 'ioredis';
import { loadConfig } from '../../common/config/env.js';
import { recordingLogger } from '../helpers/logger.js';
import { startEmbedded, type Embedded } from '../../embedded.js';
import type { Simulator } from '../../simulator/simulator.js';
import { TENANTS, asView, type HttpReply } from '../helpers/kurir.js';
import { freshPrefix } from '../helpers/redis.js';
import { keySlot, type LocalRedisCluster } from '../helpers/redis-cluster.js';

/**
 * Kurir on a Redis Cluster, for test/cluster/: every role in this process (startEmbedded) with
 * `REDIS_CLUSTER_NODES` pointing at a local cluster, plus an audit of every command any ioredis
 * connection of this process sends. The audit is what turns "no CROSSSLOT error happened" into
 * "every script and multi-key command was checked": it records, per script (named by the SHA of
 * its source as registered with defineCommand), how often it ran and the slots of the keys it
 * was given, and every error reply.
 */

export const ADMIN_TOKEN = 'cluster-admin-token-0123456789abcdef0123';

/** One multi-key command or script call seen on the wire. */
export interface AuditedCall {
  command: string;
  /** Script name for EVAL/EVALSHA (ours: `kurirCreate`…, BullMQ's: `addStandardJob:<version>`…). */
  script: string | undefined;
  keys: string[];
  slots: number[];
  port: number | undefined;
}

export interface CommandAudit {
  /** Every EVAL/EVALSHA call and every other command with two or more keys. */
  calls: AuditedCall[];
  /** Calls whose keys fell in more than one slot (must stay empty). */
  crossSlot: AuditedCall[];
  /** Error replies: message and command. */
  errors: { command: string; message: string }[];
  /** Ports that received commands; anything outside the cluster means a connection ignored REDIS_CLUSTER_NODES. */
  ports: Set<number>;
  /** Script calls per name. */
  scriptCounts(): Map<string, number>;
}

type Arg = string | Buffer | number;
interface WireCommand {
  name: string;
  args: Arg[];
  promise: Promise<unknown>;
  getKeys(): Arg[];
}

function text(value: Arg): string | Buffer {
  return typeof value === 'number' ? String(value) : value;
}

let installed: CommandAudit | undefined;

/**
 * Patches ioredis once per process: `defineCommand` (to name scripts by SHA) and every node
 * connection's `sendCommand` (all Cluster traffic, pipelines included, ends there).
 */
export function installCommandAudit(): CommandAudit {
  if (installed !== undefined) return installed;
  const shaNames = new Map<string, string>();
  const audit: CommandAudit = {
    calls: [],
    crossSlot: [],
    errors: [],
    ports: new Set(),
    scriptCounts() {
      const counts = new Map<string, number>();
      for (const call of this.calls) if (call.script !== undefined) counts.set(call.script, (counts.get(call.script) ?? 0) + 1);
      return counts;
    },
  };
  type Define = (this: unknown, name: string, definition: { lua: string; numberOfKeys?: number }) => unknown;
  for (const proto of [Redis.prototype, Cluster.prototype] as unknown as Record<string, Define>[]) {
    const original = proto.defineCommand as Define;
    proto.defineCommand = function (this: unknown, name, definition) {
      shaNames.set(createHash('sha1').update(definition.lua).digest('hex'), name);
      return original.call(this, name, definition);
    };
  }
  type Send = (this: Redis, command: WireCommand, ...rest: unknown[]) => unknown;
  const redisProto = Redis.prototype as unknown as Record<string, Send>;
  const originalSend = redisProto.sendCommand as Send;
  redisProto.sendCommand = function (this: Redis, command: WireCommand, ...rest: unknown[]) {
    const port = typeof this.options.port === 'number' ? this.options.port : undefined;
    if (port !== undefined) audit.ports.add(port);
    const name = command.name.toLowerCase();
    let keys: (string | Buffer)[] = [];
    let script: string | undefined;
    if (name === 'evalsha' || name === 'eval') {
      const count = Number(String(command.args[1]));
      keys = command.args.slice(2, 2 + count).map(text);
      script = name === 'evalsha' ? (shaNames.get(String(command.args[0])) ?? `sha:${String(command.args[0]).slice(0, 8)}`) : 'eval';
    } else {
      try {
        keys = command.getKeys().map(text);
      } catch {
        keys = [];
      }
    }
    if (script !== undefined || keys.length > 1) {
      const slots = [...new Set(keys.map((key) => keySlot(key)))];
      const call: AuditedCall = { command: name, script, keys: keys.map(String), slots, port };
      audit.calls.push(call);
      if (slots.length > 1) audit.crossSlot.push(call);
    }
    command.promise.catch((error: unknown) => {
      audit.errors.push({ command: script ?? name, message: error instanceof Error ? error.message : String(error) });
    });
    return originalSend.call(this, command, ...rest);
  };
  installed = audit;
  return audit;
}

export interface ClusterKurir {
  url: string;
  prefix: string;
  kurir: Embedded;
  simulator: Simulator;
  logs: string[];
  request(method: string, path: string, options?: { body?: unknown; rawBody?: string; headers?: Record<string, string>; tenant?: keyof typeof TENANTS | null }): Promise<HttpReply>;
  waitFor(id: string, predicate: (v: ReturnType<typeof asView>) => boolean, timeoutMs?: number): Promise<ReturnType<typeof asView>>;
  /** Closes Kurir, giving up after `timeoutMs` (a lost cluster node can hold a graceful close). */
  close(timeoutMs?: number): Promise<'closed' | 'timed out'>;
}

export async function startClusterKurir(cluster: LocalRedisCluster, env: Record<string, string> = {}): Promise<ClusterKurir> {
  const prefix = freshPrefix('cluster');
  const config = loadConfig({
    PORT: '0',
    SIMULATOR_PORT: '0',
    REDIS_CLUSTER_NODES: cluster.nodesList,
    KURIR_KEY_PREFIX: prefix,
    KURIR_API_KEYS: Object.entries(TENANTS).map(([tenant, key]) => `${tenant}=${key}`).join(','),
    KURIR_SECRET: 'cluster-secret-0123456789abcdef0123456789abcdef',
    KURIR_ADMIN_TOKEN: ADMIN_TOKEN,
    KURIR_DELIVERY_TIMEOUT_SECONDS: '1',
    SIMULATOR_RECEIPT_DELAY_MS: '20',
    SIMULATOR_SLOW_RECEIPT_MS: '2500',
    WORKER_CONCURRENCY: '10',
    LOG_LEVEL: 'debug',
    LOG_FORMAT: 'json',
    KURIR_POLICY_FILE: fileURLToPath(new URL('../fixtures/e2e.policy.yaml', import.meta.url)),
    ...env,
  });
  const { logger, lines: logs } = recordingLogger('debug');
  const kurir = await startEmbedded(config, { logger });
  if (kurir.simulator === undefined) throw new Error('the cluster harness needs the simulator');
  const simulator = kurir.simulator;
  await Promise.all([kurir.services.redis.ping(), kurir.services.workerRedis.ping()]);
  const url = kurir.api.url;

  const request: ClusterKurir['request'] = async (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    const tenant = options.tenant === undefined ? 'acme' : options.tenant;
    if (tenant !== null && headers.Authorization === undefined) headers.Authorization = `Bearer ${TENANTS[tenant]}`;
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['Content-Type'] ??= 'application/json';
    }
    const response = await fetch(`${url}${path}`, { method, headers, signal: AbortSignal.timeout(10_000), ...(body === undefined ? {} : { body }) });
    const raw = await response.text();
    let parsed: Record<string, unknown> = {};
    try {
      const value: unknown = raw === '' ? {} : JSON.parse(raw);
      if (typeof value === 'object' && value !== null) parsed = value as Record<string, unknown>;
    } catch {
      parsed = {};
    }
    return { status: response.status, headers: response.headers, body: parsed, text: raw };
  };

  let closed: Promise<'closed' | 'timed out'> | undefined;
  return {
    url,
    prefix,
    kurir,
    simulator,
    logs,
    request,
    async waitFor(id, predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      let last: ReturnType<typeof asView> | undefined;
      while (Date.now() < deadline) {
        const reply = await request('GET', `/v1/verifications/${id}`);
        last = asView(reply.body);
        if (reply.status === 200 && predicate(last)) return last;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error(`timed out waiting on ${id}; last seen: ${JSON.stringify(last)}`);
    },
    close(timeoutMs = 10_000) {
      closed ??= Promise.race([
        kurir.close().then(() => 'closed' as const),
        new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), timeoutMs).unref()),
      ]).then((outcome) => {
        if (outcome === 'timed out') {
          // Whatever the graceful close left open must not keep the test process alive.
          kurir.services.redis.disconnect();
          kurir.services.workerRedis.disconnect();
          // The workers' and queues' own connections keep reconnecting to the lost node, and the
          // test runner waits for this file's process to exit: end it once the report is out.
          setTimeout(() => process.exit(), 3000).unref();
        }
        return outcome;
      });
      return closed;
    },
  };
}

/** Every key under a prefix, per cluster primary: SCAN runs per node (a Cluster client's SCAN sees one node only). */
export async function keysPerNode(cluster: LocalRedisCluster, prefix: string): Promise<Map<number, string[]>> {
  const result = new Map<number, string[]>();
  for (const port of cluster.ports) {
    const node = cluster.node(port);
    const found: string[] = [];
    try {
      for (const pattern of [`${prefix}:*`, `{${prefix}-*`]) {
        let cursor = '0';
        do {
          const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          cursor = next;
          found.push(...batch);
        } while (cursor !== '0');
      }
    } finally {
      await node.quit();
    }
    result.set(port, found);
  }
  return result;
}
