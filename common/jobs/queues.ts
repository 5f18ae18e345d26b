import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { Channel } from '../domain/channel.js';
import type { KeySpace } from '../store/keys.js';
import {
  JOB_NAMES,
  QUEUES,
  SEND_QUEUE,
  jobIds,
  type CallbackJob,
  type DeliveryTimeoutJob,
  type QueueName,
  type ReceiptJob,
  type SendJob,
} from './catalogue.js';

/**
 * Retry policy per queue. An OTP is only useful for minutes, so retries are few and quick;
 * the jitter keeps a burst of failures from retrying in lockstep against a recovering vendor.
 * Finished jobs are removed by age so queue memory stays bounded.
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

const RETENTION: JobsOptions = {
  removeOnComplete: { age: 3600, count: 5000 },
  removeOnFail: { age: 24 * 3600, count: 5000 },
};

export function queueOptions(keys: KeySpace, name: QueueName, connection: ConnectionOptions) {
  return { connection, prefix: keys.queuePrefix(name), defaultJobOptions: { ...RETENTION, ...JOB_OPTIONS[name] } };
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

  async armDeliveryTimeout(job: DeliveryTimeoutJob, delayMs: number): Promise<void> {
    await this.queue(QUEUES.deliveryTimeout).add(JOB_NAMES.deliveryTimeout, job, {
      jobId: jobIds.deliveryTimeout(job.verificationId, job.delivery),
      delay: delayMs,
    });
  }

  /** Removes a pending timeout once the delivery is confirmed; a timer already firing checks state anyway. */
  async disarmDeliveryTimeout(verificationId: string, delivery: number): Promise<void> {
    await this.queue(QUEUES.deliveryTimeout).remove(jobIds.deliveryTimeout(verificationId, delivery));
  }

  async enqueueReceipt(eventDigest: string, job: ReceiptJob): Promise<void> {
    await this.queue(QUEUES.receipts).add(JOB_NAMES.receipt, job, { jobId: jobIds.receipt(eventDigest) });
  }

  /** Queues one callback; the job id names the event, so the same event is queued once. */
  async enqueueCallback(jobId: string, job: CallbackJob): Promise<void> {
    await this.queue(QUEUES.callbacks).add(JOB_NAMES.callback, job, { jobId });
  }

  /** Ends the verification at its expiry if nothing else did (approval, cancel, a late check). */
  async scheduleExpiry(verificationId: string, delayMs: number): Promise<void> {
    await this.queue(QUEUES.verificationExpiry).add(
      JOB_NAMES.verificationExpiry,
      { verificationId },
      { jobId: jobIds.verificationExpiry(verificationId), delay: Math.max(0, delayMs) },
    );
  }

  async close(): Promise<void> {
    const results = await Promise.allSettled([...this.queues.values()].map((queue) => queue.close()));
    this.queues.clear();
    const failure = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }
}
