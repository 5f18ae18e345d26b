import type { Logger } from 'pino';
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../store/verification.store.js';

export interface RedisSettingsReport {
  maxmemoryPolicy: string | undefined;
  aofEnabled: boolean | undefined;
  /** False when the eviction policy could silently drop verifications or queued jobs. */
  safe: boolean;
}

function infoField(info: string, name: string): string | undefined {
  const match = new RegExp(`^${name}:(.*)$`, 'm').exec(info);
  return match?.[1]?.trim();
}

/**
 * Reads the Redis settings Kurir depends on. Any eviction policy other than `noeviction` lets
 * Redis drop a verification or a queued send under memory pressure without telling anyone, so it
 * is reported as unsafe. Managed Redis services may refuse CONFIG; then the policy is unknown,
 * which is reported but not treated as unsafe.
 */
export async function inspectRedis(redis: RedisClient): Promise<RedisSettingsReport> {
  // On a Cluster every primary holds part of the data: one evicting node is enough to lose some.
  if (redis instanceof Cluster) {
    const reports = await Promise.all(redis.nodes('master').map((node) => inspectNode(node)));
    const unsafe = reports.find((report) => !report.safe);
    return unsafe ?? reports[0] ?? { maxmemoryPolicy: undefined, aofEnabled: undefined, safe: true };
  }
  return inspectNode(redis);
}

async function inspectNode(redis: Redis): Promise<RedisSettingsReport> {
  let policy: string | undefined;
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as unknown;
    if (Array.isArray(reply) && typeof reply[1] === 'string') policy = reply[1];
  } catch {
    policy = undefined;
  }
  let aof: boolean | undefined;
  try {
    const info = await redis.info('persistence');
    const enabled = infoField(info, 'aof_enabled');
    aof = enabled === undefined ? undefined : enabled === '1';
  } catch {
    aof = undefined;
  }
  return { maxmemoryPolicy: policy, aofEnabled: aof, safe: policy === undefined || policy === 'noeviction' };
}

/** What to do about a report: carry on, warn, or (production) refuse to run. */
export function redisVerdict(report: RedisSettingsReport, production: boolean): 'ok' | 'warn' | 'fatal' {
  if (report.safe) return 'ok';
  return production ? 'fatal' : 'warn';
}

/** Logs the report each time the connection becomes ready; in production an unsafe Redis is fatal. */
export function watchRedisSettings(
  redis: RedisClient,
  options: { production: boolean; logger: Logger; onUnsafe: () => void },
): void {
  redis.on('ready', () => {
    inspectRedis(redis)
      .then((report) => {
        const details = { maxmemoryPolicy: report.maxmemoryPolicy ?? 'unknown', aofEnabled: report.aofEnabled ?? 'unknown' };
        const verdict = redisVerdict(report, options.production);
        if (verdict === 'ok') {
          options.logger.info(details, 'redis settings checked');
          return;
        }
        if (verdict === 'fatal') {
          options.logger.fatal(details, 'redis maxmemory-policy must be noeviction in production; refusing to run');
          options.onUnsafe();
        } else {
          options.logger.warn(details, 'redis maxmemory-policy is not noeviction: verifications and jobs may be evicted');
        }
      })
      .catch((error: unknown) => options.logger.warn({ err: error }, 'could not inspect redis settings'));
  });
}
