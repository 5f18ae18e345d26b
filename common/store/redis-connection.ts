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

/** What a connection is for: commands fail fast for producers; workers wait and reconnect forever. */
export type ConnectionRole = 'commands' | 'workers';

function roleOptions(role: ConnectionRole, name: string): RedisOptions {
  return role === 'commands'
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

export function createRedisConnection(topology: RedisTopology, role: ConnectionRole, name: string): RedisClient {
  const options = roleOptions(role, name);
  switch (topology.kind) {
    case 'single':
      return new Redis(topology.url, options);
    case 'sentinel':
      return new Redis({
        ...options,
        sentinels: topology.sentinels,
        name: topology.name,
        db: topology.db,
        ...(topology.password === undefined ? {} : { password: topology.password, sentinelPassword: topology.password }),
      });
    case 'cluster': {
      const clusterOptions: ClusterOptions = {
        redisOptions: { ...options, ...(topology.password === undefined ? {} : { password: topology.password }) },
        // Cluster-level equivalent of the per-request limit above.
        ...(role === 'commands' ? { maxRedirections: 16 } : {}),
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
