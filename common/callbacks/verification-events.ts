import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { effectiveStatus } from '../domain/verification.js';
import { callbackJobSchema, jobIds, type CallbackEvent, type CallbackEventType } from '../jobs/catalogue.js';
import type { JobQueues } from '../jobs/queues.js';
import type { StoredVerification, VerificationStore } from '../store/verification.store.js';

/**
 * Emits a verification's callback events (DESIGN.md flow step 6): one `queue.add` on the
 * `callbacks` queue per event, and only for a verification created with a `callbackUrl`. The job
 * id names the event (`callback-<id>-<type>[-<n>]`), so whoever notices an event — a retried
 * job, two racing processes — queues it once. The callbacks worker posts and retries it.
 *
 * Events: `verification.delivered` (first delivered/read receipt of any delivery, once per
 * verification), `verification.fallback` (each fallback started), `verification.approved`,
 * `verification.expired`, `verification.failed` (the last channel of the plan failed). Payloads
 * never carry a code.
 *
 * Errors (Redis away) propagate: a job handler that emits is retried and emits again, harmlessly.
 */
export interface VerificationEventsDeps {
  store: VerificationStore;
  queues: JobQueues;
  logger: Logger;
  now: () => number;
}

/** Field of the verification hash that records who claimed the `delivered` event. */
const DELIVERED_CLAIM = 'cbDelivered';
const FALLBACK_REASONS = new Set(['failed', 'timeout', 'rejected']);

type EventData<T extends CallbackEventType> = Extract<CallbackEvent, { type: T }>['data'];

/**
 * The event id follows from the event itself (its job id, and the verification's creation time:
 * an Idempotency-Key can bring a verification id back once the old record is gone). Should the
 * same event be queued again after its finished job was cleaned away, the tenant still sees the
 * same id and can drop the repeat.
 */
function eventIdFor(jobId: string, verificationCreatedAt: number): string {
  return `evt_${createHash('sha256').update(`${jobId}\0${verificationCreatedAt}`).digest('hex').slice(0, 24)}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class VerificationEvents {
  constructor(private readonly deps: VerificationEventsDeps) {}

  /**
   * A delivered/read receipt was applied to delivery `n`. The first one of the verification wins
   * an atomic claim (owner: the receipt job, whose retry may claim again); later ones — another
   * delivery's, duplicates — find it taken.
   */
  async delivered(id: string, n: number, owner: string): Promise<void> {
    if ((await this.deps.store.claimEvent(id, DELIVERED_CLAIM, owner)) !== 'claimed') return;
    const verification = await this.load(id);
    const delivery = verification?.deliveries.find((candidate) => candidate.n === n);
    if (verification === undefined || delivery === undefined) return;
    const status = delivery.status === 'read' ? 'read' : 'delivered';
    await this.queue(verification, 'verification.delivered', {
      delivery: n,
      channel: delivery.channel,
      status,
      deliveredAt: iso(delivery.deliveredAt ?? this.deps.now()),
    });
  }

  /**
   * Delivery `m` was started as a fallback. Read back from the record (not from the caller) so a
   * re-dispatch after a race reports what the store decided, and a resend is never reported.
   */
  async fallback(id: string, m: number): Promise<void> {
    const verification = await this.load(id);
    const delivery = verification?.deliveries.find((candidate) => candidate.n === m);
    if (verification === undefined || delivery === undefined || !FALLBACK_REASONS.has(delivery.reason)) return;
    const from = verification.deliveries.find((candidate) => candidate.fellBackTo === m);
    if (from === undefined) return;
    await this.queue(
      verification,
      'verification.fallback',
      { delivery: m, from: from.channel, to: delivery.channel, reason: delivery.reason as 'failed' | 'timeout' | 'rejected' },
      m,
    );
  }

  /**
   * A delivery failed with no channel left in the plan: the latest failed delivery that did not
   * fall back (the store's `exhausted`; every earlier delivery carries a fallback marker). Not
   * reported when another delivery of the verification did reach the user (e.g. a resend over a
   * channel that then failed).
   */
  async failed(id: string): Promise<void> {
    const verification = await this.load(id);
    if (verification === undefined) return;
    if (verification.deliveries.some((candidate) => candidate.status === 'delivered' || candidate.status === 'read')) return;
    const delivery = verification.deliveries.findLast((candidate) => candidate.status === 'failed' && candidate.fellBackTo === undefined);
    if (delivery === undefined) return;
    await this.queue(verification, 'verification.failed', { delivery: delivery.n, channel: delivery.channel, errorCode: delivery.errorCode ?? null }, delivery.n);
  }

  /** The verification just ended as approved or expired (the caller's transition did it, once). */
  async ended(verification: StoredVerification, status: 'approved' | 'expired'): Promise<void> {
    if (verification.callbackUrl === undefined) return;
    if (status === 'approved') {
      await this.queue(verification, 'verification.approved', { approvedAt: iso(verification.approvedAt ?? verification.endedAt ?? this.deps.now()) });
    } else {
      await this.queue(verification, 'verification.expired', { expiresAt: iso(verification.expiresAt) });
    }
  }

  private async load(id: string): Promise<StoredVerification | undefined> {
    const verification = await this.deps.store.get(id);
    return verification?.callbackUrl === undefined ? undefined : verification;
  }

  private async queue<T extends CallbackEventType>(verification: StoredVerification, type: T, data: EventData<T>, n?: number): Promise<void> {
    const url = verification.callbackUrl;
    if (url === undefined) return;
    const now = this.deps.now();
    const jobId = jobIds.callback(verification.id, type, n);
    const event = {
      id: eventIdFor(jobId, verification.createdAt),
      type,
      createdAt: iso(now),
      verification: {
        id: verification.id,
        status: effectiveStatus(verification, now),
        purpose: verification.purpose,
        to: verification.to,
        channel: verification.deliveries.at(-1)?.channel ?? verification.plan[0] ?? 'sms',
        deliveries: verification.deliveries.length,
      },
      data,
    };
    // Parsed on the way in as well as out: a malformed event fails here, in the emitter's logs.
    const job = callbackJobSchema.parse({ tenant: verification.tenant, url, event });
    await this.deps.queues.enqueueCallback(jobId, job);
    this.deps.logger.info({ verificationId: verification.id, eventId: event.id, type, jobId }, 'callback event queued');
  }
}
