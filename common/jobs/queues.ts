import { Job, Queue, type ConnectionOptions, type JobsOptions, type KeepJobs } from 'bullmq';
import type { Channel } from '../domain/channel.js';
import type { KeySpace } from '../store/keys.js';
import {
  JOB_NAMES,
  QUEUES,
  SEND_QUEUE,
  jobIds,
  verificationExpiryJobSchema,
  type CallbackJob,
  type DeliveryTimeoutJob,
  type QueueName,
  type SendJob,
} from './catalogue.js';

/**
 * Retry policy per queue. An OTP is only useful for minutes, so retries are few and quick;
 * the jitter keeps a burst of failures from retrying in lockstep against a recovering vendor.
 */
const JOB_OPTIONS: Record<QueueName, JobsOptions> = {
  'send-whatsapp': { attempts: 3, backoff: { type: 'exponential', delay: 500, jitter: 0.5 } },
  'send-sms': { attempts: 5, backoff: { type: 'exponential', delay: 1000, jitter: 0.5 } },
  'send-email': { attempts: 5, backoff: { type: 'exponential', delay: 1000, jitter: 0.5 } },
  receipts: { attempts: 8, backoff: { type: 'exponential', delay: 500, jitter: 0.5 } },
  'delivery-timeout': { attempts: 5, backoff: { type: 'exponential', delay: 500, jitter: 0.5 } },
  'verification-expiry': { attempts: 5, backoff: { type: 'exponential', delay: 500, jitter: 0.5 } },
  // A tenant's endpoint may be down for minutes: 8 attempts from ~2 s span about 4 minutes.
  callbacks: { attempts: 8, backoff: { type: 'exponential', delay: 2000, jitter: 0.5 } },
};

/** Failed jobs stay a day for diagnosis (bounded by count too), whatever the queue. */
const KEEP_FAILED: KeepJobs = { age: 24 * 3600, count: 5000 };

/** BullMQ's "remove at once". */
const DROP: KeepJobs = { count: 0 };

/**
 * What happens to a job that completed. Sends, timeouts, expiries and (queued) receipts are
 * dropped at once: the verification's hash is what makes them happen once (`begin_send`, the
 * fallback marker, forward-only receipts, `expire` only from pending), so a job added again after
 * its predecessor was dropped runs and finds nothing to do. A kept completed job would cost about
 * 1 KB for an hour per verification (BENCHMARKS.md). Callbacks are the exception: their job id is
 * what keeps an event that is noticed twice (a retried job, two racing processes) from being
 * posted twice, so their finished jobs stay, removed by age.
 */
const ON_COMPLETE: Record<QueueName, KeepJobs> = {
  'send-whatsapp': DROP,
  'send-sms': DROP,
  'send-email': DROP,
  receipts: DROP,
  'delivery-timeout': DROP,
  'verification-expiry': DROP,
  callbacks: { age: 3600, count: 5000 },
};

/**
 * Approximate length BullMQ trims each queue's event stream to (default 10,000 ≈ 1.2 MB per
 * busy queue). Kurir reads no queue events (no QueueEvents, nor the dashboard); the stream is only
 * a recent history for someone debugging with redis-cli.
 */
export const EVENT_STREAM_MAX_LEN = 1000;

export function queueOptions(keys: KeySpace, name: QueueName, connection: ConnectionOptions) {
  return {
    connection,
    prefix: keys.queuePrefix(name),
    defaultJobOptions: JOB_OPTIONS[name],
    streams: { events: { maxLen: EVENT_STREAM_MAX_LEN } },
  };
}

/**
 * Retention is the processing worker's option (BullMQ applies it to jobs that carry none), not
 * each job's: a job hash stores its options as JSON, and these would add ~65 B to every waiting
 * and delayed job (the timer of every in-flight verification among them). Every
 * processor is started with it (common/jobs/processor.ts); during a rolling upgrade an older
 * worker keeps what it completes of these jobs until the next cleanup of its queue.
 */
export function retentionOptions(name: QueueName): { removeOnComplete: KeepJobs; removeOnFail: KeepJobs } {
  return { removeOnComplete: ON_COMPLETE[name], removeOnFail: KEEP_FAILED };
}

/**
 * Re-times a delayed job (BullMQ's changeDelay: due `delayMs` from now). False when the job is not
 * delayed — it is running, or gone — so the caller can take another way.
 */
async function moveTimer(job: Job, delayMs: number): Promise<boolean> {
  try {
    await job.changeDelay(delayMs);
    return true;
  } catch {
    return false;
  }
}

/** The producer side of every queue, for the process roles that enqueue work. */
export class JobQueues {
  private readonly queues = new Map<QueueName, Queue>();

  constructor(
    private readonly keys: KeySpace,
    private readonly connection: ConnectionOptions,
  ) {}

  queue(name: QueueName): Queue {
    let queue = this.queues.get(name);
    if (queue === undefined) {
      queue = new Queue(name, queueOptions(this.keys, name, this.connection));
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** Adding the same delivery twice is a no-op: the job id is derived from it. */
  async enqueueSend(channel: Channel, job: SendJob): Promise<void> {
    await this.queue(SEND_QUEUE[channel]).add(JOB_NAMES.send, job, { jobId: jobIds.send(job.verificationId, job.delivery) });
  }

  /** Drops a queued send that turned out not to be wanted; one a worker already holds stays (it finds no record). */
  async discardSend(channel: Channel, verificationId: string, delivery: number): Promise<void> {
    await this.queue(SEND_QUEUE[channel]).remove(jobIds.send(verificationId, delivery));
  }

  /**
   * Arms delivery `n`'s "no delivered receipt in time" fallback. The verification's timer (its
   * expiry job, see scheduleExpiry) is moved earlier to the deadline, so an in-flight verification
   * holds one delayed job, not two. Moving it can skip no deadline that still matters: only the
   * latest delivery is armed, every earlier one having fallen back or been superseded by it. The
   * timer is moved by its id alone, with the expiry the caller read from the record (`expiresAt`),
   * rather than read first (an HGETALL and a parse of every field, once per send). A timeout job of
   * its own is the way when the timer cannot be moved: it is firing right now, or it is gone.
   */
  async armDeliveryTimeout(job: DeliveryTimeoutJob, delayMs: number, expiresAt: number): Promise<void> {
    // The verification ends first: a timeout after that would have nothing left to do.
    if (Date.now() + delayMs >= expiresAt) return;
    if (await moveTimer(this.timerHandle(job.verificationId), delayMs)) return;
    await this.queue(QUEUES.deliveryTimeout).add(JOB_NAMES.deliveryTimeout, job, {
      jobId: jobIds.deliveryTimeout(job.verificationId, job.delivery),
      delay: delayMs,
    });
  }

  /**
   * Once delivery `n` is confirmed. With the verification's timer in use, nothing but the timer
   * needs changing, and only when the caller knows that no delivery waits for a timeout any more
   * (`restAt`: the expiry to put it back to); otherwise its handler wakes, finds nothing due and
   * sleeps on. The timer is moved back by its id alone: putting it at the expiry the caller read
   * from the record is right whatever the job carries, so it is not read first (an HGETALL and a
   * parse of every field, once per delivered verification). When it cannot be moved it is firing
   * now (its handler re-reads the record and sleeps until what is still due), or gone; should a
   * timeout job of its own exist beside it (armed while the timer was firing), it fires and finds
   * the delivery confirmed. Without a current timer (gone, or an earlier version's), the
   * delivery's timeout job is removed.
   */
  async disarmDeliveryTimeout(verificationId: string, delivery: number, restAt?: number): Promise<void> {
    if (restAt !== undefined && (await moveTimer(this.timerHandle(verificationId), Math.max(0, restAt - Date.now())))) return;
    if (!(await this.hasCurrentTimer(verificationId))) {
      await this.queue(QUEUES.deliveryTimeout).remove(jobIds.deliveryTimeout(verificationId, delivery));
    }
  }

  /** Queues one callback; the job id names the event, so the same event is queued once. */
  async enqueueCallback(jobId: string, job: CallbackJob): Promise<void> {
    await this.queue(QUEUES.callbacks).add(JOB_NAMES.callback, job, { jobId });
  }

  /**
   * The verification's timer: a delayed job due at its expiry, which ends it if nothing else did
   * (approval, cancel, a late check), and which armDeliveryTimeout moves earlier while a delivery
   * waits for its receipt. Its data carries the expiry, so the timer is never moved past it.
   * Armed by the first send job that runs (send.handler.ts), at the expiry or straight at its
   * delivery's deadline (`wakeAt`); its id is the verification's, so arming it again is a no-op.
   */
  async scheduleExpiry(verificationId: string, expiresAt: number, wakeAt = expiresAt): Promise<void> {
    await this.queue(QUEUES.verificationExpiry).add(
      JOB_NAMES.verificationExpiry,
      { verificationId, expiresAt },
      { jobId: jobIds.verificationExpiry(verificationId), delay: Math.max(0, Math.min(wakeAt, expiresAt) - Date.now()) },
    );
  }

  /** The verification's timer by id alone, for BullMQ's calls that need nothing else of it (changeDelay). */
  private timerHandle(verificationId: string): Job {
    return new Job(this.queue(QUEUES.verificationExpiry), JOB_NAMES.verificationExpiry, {}, {}, jobIds.verificationExpiry(verificationId));
  }

  /** Whether the verification's timer exists and carries its expiry (an earlier version's does not). */
  private async hasCurrentTimer(verificationId: string): Promise<boolean> {
    const job = await this.queue(QUEUES.verificationExpiry).getJob(jobIds.verificationExpiry(verificationId));
    return job !== undefined && verificationExpiryJobSchema.safeParse(job.data).data?.expiresAt !== undefined;
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled([...this.queues.values()].map((queue) => queue.close()));
    this.queues.clear();
    const failure = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }
}
