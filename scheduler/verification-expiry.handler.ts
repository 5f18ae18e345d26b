import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { VerificationEvents } from '../common/callbacks/verification-events.js';
import { verificationExpiryJobSchema } from '../common/jobs/catalogue.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { countryLabel, type Metrics } from '../common/observability/metrics.js';
import { recordEnded } from '../common/stats/stats-recorder.js';
import type { KeySpace } from '../common/store/keys.js';
import type { RedisClient, VerificationStore } from '../common/store/verification.store.js';

export interface VerificationExpiryDeps {
  store: VerificationStore;
  queues: JobQueues;
  metrics: Metrics;
  logger: Logger;
  /** For the `/v1/stats` counters. */
  redis: RedisClient;
  keys: KeySpace;
  now: () => number;
}

export type VerificationExpiryOutcome = { outcome: 'expired' | 'not_pending' | 'missing' };

/** Thrown when the job runs before the verification's `expiresAt` (clock skew): BullMQ retries it shortly. */
export class ExpiryNotDueError extends Error {
  override readonly name = 'ExpiryNotDueError';
}

/**
 * Fires at a verification's `expiresAt` (a delayed job added on create, `expire-<id>`). A
 * verification still pending then is ended as `expired` in one atomic step — its sealed code is
 * dropped now instead of when the record's TTL runs out — counted, and reported to the tenant's
 * callback. An approved, canceled or already expired one is left alone, so the job is safe to
 * run any number of times and to race a late check (only one of them ends it).
 */
export async function handleVerificationExpiry(job: Job, deps: VerificationExpiryDeps): Promise<VerificationExpiryOutcome> {
  const { verificationId } = verificationExpiryJobSchema.parse(job.data);
  const result = await deps.store.expire(verificationId, deps.now());
  switch (result.kind) {
    case 'not_due':
      // This process's clock is behind the one that created the verification.
      throw new ExpiryNotDueError(`verification expires in ${result.msLeft} ms`);
    case 'not_pending':
    case 'missing':
      deps.metrics.jobsSkipped.inc({ queue: job.queueName, reason: result.kind });
      return { outcome: result.kind };
    case 'expired':
      break;
  }
  deps.logger.info({ verificationId, status: 'expired', tenant: result.tenant, jobId: job.id }, 'verification ended');
  const verification = await deps.store.get(verificationId);
  deps.metrics.verificationsEnded.inc({
    tenant: result.tenant,
    purpose: result.purpose,
    status: 'expired',
    country: countryLabel(verification?.country),
  });
  if (verification !== undefined) {
    await recordEnded(deps, {
      tenant: verification.tenant,
      country: countryLabel(verification.country),
      channel: verification.deliveries.at(-1)?.channel ?? 'sms',
      status: 'expired',
      timeToVerifySeconds: undefined,
    });
    await new VerificationEvents(deps).ended(verification, 'expired');
  }
  return { outcome: 'expired' };
}
