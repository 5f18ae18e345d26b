import type { Config } from '../config/env.js';
import { loadPolicy, type Policy } from '../config/policy.js';
import { JobQueues } from '../jobs/queues.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { createKeepAliveTransport } from '../http/keep-alive-transport.js';
import type { MessagingProvider } from '../providers/provider.js';
import { createYCloudProvider } from '../providers/ycloud/ycloud.provider.js';
import { DailyBudget } from '../security/budget.js';
import { createCodeVault, type CodeVault } from '../security/code-vault.js';
import { DestinationLockout } from '../security/lockout.js';
import { GUARD_APPROVAL_FLUSH_INTERVAL_MS, PumpingGuard } from '../security/pumping-guard.js';
import { SendLimiter } from '../security/rate-limiter.js';
import { SendGate } from '../security/send-gate.js';
import { STATS_FLUSH_INTERVAL_MS, StatsStore } from '../stats/stats.store.js';
import { createKeySpace, type KeySpace } from '../store/keys.js';
import { watchRedisSettings } from './redis-checks.js';
import { createRedisConnection } from '../store/redis-connection.js';
import { VerificationStore, type RedisClient } from '../store/verification.store.js';

/**
 * What every role shares, built once by a process's composition root (its main.ts). Nothing
 * below this level creates connections, loggers or providers; they are passed in.
 */
export interface Services {
  config: Config;
  policy: Policy;
  logger: Logger;
  metrics: Metrics;
  keys: KeySpace;
  /** Command connection: the store's and the security scripts (auto-pipelined). Fails fast when Redis is away. */
  redis: RedisClient;
  /** Connection template for BullMQ workers (they need `maxRetriesPerRequest: null` and reconnect forever). */
  workerRedis: RedisClient;
  store: VerificationStore;
  /** `/v1/stats` counters. Built here with the others: a script defined on a connection after its traffic began is missing from an auto-pipeline already filling (ioredis #1931). */
  stats: StatsStore;
  queues: JobQueues;
  gate: SendGate;
  lockout: DestinationLockout;
  budget: DailyBudget;
  guard: PumpingGuard;
  vault: CodeVault;
  provider: MessagingProvider;
  now: () => number;
  close(): Promise<void>;
}

export function createServices(
  config: Config,
  options: { role: string; logger?: Logger; /** Default: SIGTERM to itself, i.e. a graceful stop. */ onUnsafeRedis?: () => void },
): Services {
  const logger = options.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, name: `kurir-${options.role}` });
  const policy = loadPolicy(config.policyFile);
  const metrics = createMetrics({ role: options.role });
  const keys = createKeySpace(config.redis.keyPrefix);
  const redis = createRedisConnection(config.redis.topology, 'commands', `kurir-${options.role}`);
  const workerRedis = createRedisConnection(config.redis.topology, 'workers', `kurir-${options.role}-worker`);
  redis.on('error', (error: Error) => logger.warn({ err: { message: error.message } }, 'redis connection error'));
  watchRedisSettings(redis, {
    production: config.production,
    logger,
    onUnsafe: options.onUnsafeRedis ?? (() => process.kill(process.pid, 'SIGTERM')),
  });
  workerRedis.on('error', (error: Error) => logger.warn({ err: { message: error.message } }, 'redis (worker) connection error'));
  // The queue producers on a connection of their own, which fails fast too (ConnectionRole).
  const queueRedis = createRedisConnection(config.redis.topology, 'queues', `kurir-${options.role}-queues`);
  queueRedis.on('error', (error: Error) => logger.warn({ err: { message: error.message } }, 'redis (queues) connection error'));
  const queues = new JobQueues(keys, queueRedis);
  const store = new VerificationStore(redis, keys, config.retentionSeconds * 1000);
  const stats = new StatsStore(redis, keys.prefix, { flushIntervalMs: STATS_FLUSH_INTERVAL_MS, logger });
  const lockout = new DestinationLockout(redis, keys);
  const budget = new DailyBudget(redis, keys.prefix);
  const guard = new PumpingGuard(redis, { keyPrefix: keys.prefix, flushIntervalMs: GUARD_APPROVAL_FLUSH_INTERVAL_MS, logger });
  const gate = new SendGate({ redis, limiter: new SendLimiter(redis), guard, budget, lockout, keys });
  // One keep-alive pool per process for every provider call.
  const http = createKeepAliveTransport();
  const provider = createYCloudProvider({
    baseUrl: config.provider.baseUrl,
    apiKey: config.provider.apiKey,
    whatsappFrom: config.provider.whatsappFrom,
    smsSenderId: config.provider.smsSenderId,
    emailFrom: config.provider.emailFrom,
    timeoutMs: config.provider.timeoutMs,
    transport: http.send,
  });
  for (const name of config.developmentDefaults) {
    logger.warn({ setting: name }, 'using a built-in development default; set it before going to production');
  }
  let closing: Promise<void> | undefined;
  return {
    config,
    policy,
    logger,
    metrics,
    keys,
    redis,
    workerRedis,
    store,
    stats,
    queues,
    gate,
    lockout,
    budget,
    guard,
    vault: createCodeVault(config.secret),
    provider,
    now: () => Date.now(),
    close: () =>
      (closing ??= (async () => {
        // Queues and the batched counts first (they use the connections), then the connections themselves.
        await Promise.all([queues.close().catch((error: unknown) => logger.warn({ err: error }, 'closing queues failed')), stats.close(), guard.close()]);
        await Promise.allSettled([redis.quit(), workerRedis.quit(), queueRedis.quit()]);
        http.close();
      })()),
  };
}
