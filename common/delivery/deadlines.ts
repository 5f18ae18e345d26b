import { nextChannel, type Delivery, type Verification } from '../domain/verification.js';

/**
 * The delivery timeouts of a verification as its stored state implies them, for the verification's
 * timer (scheduler/verification-expiry.handler.ts), which is moved to a delivery's deadline instead
 * of keeping a job per timeout. A delivery waits for its timeout when the send worker would have
 * armed one (worker/send.handler.ts): the provider took the message (`accepted`/`sent`, so it has a
 * `sentAt`), nothing settled it yet (no delivered/read/failed receipt, no fallback started from it)
 * and the plan has a channel to fall back to. Its deadline is `sentAt` + the verification's
 * delivery timeout.
 */

export interface DeliveryDeadline {
  n: number;
  at: number;
}

const WAITING: ReadonlySet<Delivery['status']> = new Set(['accepted', 'sent']);

export function deliveryDeadlines(verification: Pick<Verification, 'plan' | 'deliveries' | 'deliveryTimeoutSeconds'>): DeliveryDeadline[] {
  const deadlines: DeliveryDeadline[] = [];
  for (const delivery of verification.deliveries) {
    if (delivery.sentAt === undefined || delivery.fellBackTo !== undefined || !WAITING.has(delivery.status)) continue;
    if (nextChannel(verification.plan, delivery.channel) === undefined) continue;
    deadlines.push({ n: delivery.n, at: delivery.sentAt + verification.deliveryTimeoutSeconds * 1000 });
  }
  return deadlines;
}

/** When the timer should wake next after `now`: the earliest deadline still ahead, else the expiry. */
export function nextWake(verification: Pick<Verification, 'plan' | 'deliveries' | 'deliveryTimeoutSeconds' | 'expiresAt'>, now: number): number {
  const ahead = deliveryDeadlines(verification).map((deadline) => deadline.at).filter((at) => at > now);
  return Math.min(verification.expiresAt, ...ahead);
}
