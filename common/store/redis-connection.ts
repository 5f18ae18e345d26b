import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisClient } from './verification.store.js';

/**
 * How to reach Redis: one node (`REDIS_URL`), a Sentinel-managed primary (`REDIS_SENTINELS` +
 * `REDIS_SENTINEL_NAME`) or a Redis Cluster (`REDIS_CLUSTER_NODES`). The same code runs on all
 * three because every multi-key script touches one hash slot (see keys.ts).
 */
export type RedisTopology =
  | { kind: 'single'; url: string }
  | { kind: 'sentinel'; sentinels: { host: string; port: number }[]; name: string; password: string | undefined; db: number }
  | { kind: 'cluster'; nodes: { host: string; port: number }[]; password: string | undefined };

/**
 * What a connection is for: commands (the store's and the security scripts) and queues (the
 * queue producers) fail fast; workers wait and reconnect forever. The queue producers have a
 * connection of their own because BullMQ registers its ~50 scripts on the connection it is given,
 * and ioredis copies every script registered on a connection into each pipeline it builds there,
 * which the auto-pipelined command connection does for every batch (~70 µs each with them).
 */
export type ConnectionRole = 'commands' | 'queues' | 'workers';

function roleOptions(role: ConnectionRole, name: string): RedisOptions {
  return role !== 'workers'
    ? {
        // An API request must answer 503 within a second while Redis is away, not wait in the
        // offline queue through a growing reconnect back-off: one retry, reconnects every ≤ 200 ms.
        maxRetriesPerRequest: 1,
        connectTimeout: 800,
        commandTimeout: 900,
        retryStrategy: (attempt: number) => Math.min(attempt * 50, 200),
        connectionName: name,
      }
    : {
        // BullMQ's blocking commands need no per-request retry limit; the worker reconnects forever.
        maxRetriesPerRequest: null,
        lazyConnect: true,
        connectionName: name,
      };
}

/**
 * Auto-pipelining for one node's command connection: the commands that concurrent requests issue
 * in one event-loop turn leave in one socket write instead of one write each (BENCHMARKS.md: the
 * API's largest syscall cost). Not for the workers' connections (their blocking commands must not
 * wait behind a batch), nor the queues' (see ConnectionRole), and not on a Cluster: there ioredis batches per node but retries a
 * batch's redirections (MOVED/ASK while slots move or a primary fails over) only when every
 * command of the batch got the same one, so the others would fail with a raw MOVED instead of
 * following it; and it files a custom command under the node of its first argument, which for the
 * scripts with a varying number of keys is their key count (keyed-script.ts).
 */
function autoPipelining(role: ConnectionRole): RedisOptions {
  return role === 'commands' ? { enableAutoPipelining: true } : {};
}

export function createRedisConnection(topology: RedisTopology, role: ConnectionRole, name: string): RedisClient {
  const options = roleOptions(role, name);
  switch (topology.kind) {
    case 'single':
      return new Redis(topology.url, { ...options, ...autoPipelining(role) });
    case 'sentinel':
      return new Redis({
        ...options,
        ...autoPipelining(role),
        sentinels: topology.sentinels,
        name: topology.name,
        db: topology.db,
        ...(topology.password === undefined ? {} : { password: topology.password, sentinelPassword: topology.password }),
      });
    case 'cluster': {
      const clusterOptions: ClusterOptions = {
        redisOptions: { ...options, ...(topology.password === undefined ? {} : { password: topology.password }) },
        // Cluster-level equivalent of the per-request limit above. No auto-pipelining: see autoPipelining().
        ...(role !== 'workers' ? { maxRedirections: 16 } : {}),
        lazyConnect: role === 'workers',
      };
      return new Cluster(topology.nodes, clusterOptions);
    }
  }
}

/** `host:port,host:port` → endpoints; the caller names the variable in errors. */
export function parseEndpoints(list: string): { host: string; port: number }[] | undefined {
  const endpoints = list.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  const parsed = endpoints.map((entry) => {
    const match = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})$/.exec(entry);
    if (match === null || match[1] === undefined || match[2] === undefined) return undefined;
    const port = Number(match[2]);
    return port > 0 && port < 65536 ? { host: match[1].replace(/^\[|\]$/g, ''), port } : undefined;
  });
  if (parsed.length === 0 || parsed.some((endpoint) => endpoint === undefined)) return undefined;
  return parsed as { host: string; port: number }[];
}
