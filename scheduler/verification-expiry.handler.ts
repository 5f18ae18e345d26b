import { DelayedError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { VerificationEvents } from '../common/callbacks/verification-events.js';
import { deliveryDeadlines, nextWake } from '../common/delivery/deadlines.js';
import { verificationExpiryJobSchema } from '../common/jobs/catalogue.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { countryLabel, type Metrics } from '../common/observability/metrics.js';
import { recordEnded } from '../common/stats/stats-recorder.js';
import type { VerificationStore } from '../common/store/verification.store.js';
import { fireDeliveryTimeout } from './delivery-timeout.handler.js';
import type { StatsStore } from '../common/stats/stats.store.js';

export interface VerificationExpiryDeps {
  store: VerificationStore;
  queues: JobQueues;
  metrics: Metrics;
  logger: Logger;
  /** For the `/v1/stats` counters (its delivery timeouts' fallbacks included). */
  stats: StatsStore;
  now: () => number;
}

export type VerificationExpiryOutcome = { outcome: 'expired' | 'not_pending' | 'missing' };

/** Thrown when the job runs before the verification's `expiresAt` (clock skew): BullMQ retries it shortly. */
export class ExpiryNotDueError extends Error {
  override readonly name = 'ExpiryNotDueError';
}

/**
 * The verification's timer (`expire-<id>`, armed by the first send that runs). Before the expiry it was woken for a
 * delivery's timeout (JobQueues.armDeliveryTimeout moved it there): it fires the timeouts that are
 * due and sleeps again until the next deadline, the expiry at the latest. At `expiresAt` a
 * verification still pending is ended as `expired` in one atomic step — its sealed code is dropped
 * now instead of when the record's TTL runs out — counted, and reported to the tenant's callback.
 * An approved, canceled or already expired one is left alone, so the job is safe to run any
 * number of times and to race a late check (only one of them ends it).
 */
export async function handleVerificationExpiry(job: Job, deps: VerificationExpiryDeps, token: string | undefined): Promise<VerificationExpiryOutcome> {
  const { verificationId, expiresAt } = verificationExpiryJobSchema.parse(job.data);
  const now = deps.now();
  // A timer without the expiry in its data (queued by an earlier version, then moved to a
  // delivery's deadline) is told apart by the record, like every early wake.
  if (expiresAt === undefined || now < expiresAt) {
    const verification = await deps.store.get(verificationId);
    if (verification?.status === 'pending' && now < verification.expiresAt) {
      for (const deadline of deliveryDeadlines(verification)) {
        if (deadline.at <= now) await fireDeliveryTimeout(verificationId, deadline.n, deps);
      }
      // BullMQ's way for a job to come back later: same job, no attempt used up.
      await job.moveToDelayed(nextWake(verification, now), token);
      throw new DelayedError();
    }
    // Ended early (approved, canceled): the expiry below finds it not pending and stops.
  }
  const result = await deps.store.expire(verificationId, now);
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
  // The expire script returned what the metrics and stats need; the whole record only for a callback.
  const { ending } = result;
  const country = countryLabel(ending.country);
  deps.metrics.verificationsEnded.inc({ tenant: result.tenant, purpose: ending.purpose, status: 'expired', country });
  await recordEnded(deps, { tenant: result.tenant, country, channel: ending.channel, status: 'expired', timeToVerifySeconds: undefined });
  if (ending.hasCallback) {
    const verification = await deps.store.get(verificationId);
    if (verification !== undefined) await new VerificationEvents(deps).ended(verification, 'expired');
  }
  return { outcome: 'expired' };
}
