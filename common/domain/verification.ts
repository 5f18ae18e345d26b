import type { Channel, Locale } from './channel.js';

/**
 * Glossary (see DESIGN.md):
 * - verification: one code for one destination and purpose (`ver_…`), alive until approved,
 *   canceled or expired;
 * - delivery: one message of a verification over one channel (n = 1, 2, …);
 * - plan: the ordered channels a verification may use; a fallback moves to the next one;
 * - receipt: a delivery status reported by the provider; statuses only move forward.
 */

export const VERIFICATION_STATUSES = ['pending', 'approved', 'canceled', 'expired', 'max_attempts'] as const;
export type VerificationStatus = (typeof VERIFICATION_STATUSES)[number];

/**
 * Delivery lifecycle. `queued`/`retrying`/`sending` are ours; the rest mirror provider receipts.
 * Order matters: a status never moves to one of lower rank, which makes duplicate and
 * out-of-order receipts harmless. `failed` ranks below `delivered` because a message reported
 * failed can still turn up delivered on another device; never the other way round.
 */
export const DELIVERY_STATUSES = ['queued', 'retrying', 'sending', 'accepted', 'sent', 'failed', 'delivered', 'read'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export const DELIVERY_RANK: Record<DeliveryStatus, number> = {
  queued: 0,
  retrying: 1,
  sending: 2,
  accepted: 3,
  sent: 4,
  failed: 5,
  delivered: 6,
  read: 7,
};

/** Why a delivery was started. */
export const DELIVERY_REASONS = ['initial', 'failed', 'timeout', 'rejected', 'resend', 'user_choice'] as const;
export type DeliveryReason = (typeof DELIVERY_REASONS)[number];
export type FallbackReason = 'failed' | 'timeout' | 'rejected';

export interface Delivery {
  n: number;
  channel: Channel;
  reason: DeliveryReason;
  status: DeliveryStatus;
  provider: string | undefined;
  providerMessageId: string | undefined;
  errorCode: string | undefined;
  queuedAt: number;
  sentAt: number | undefined;
  deliveredAt: number | undefined;
  failedAt: number | undefined;
  /** Delivery number this one fell back to, once a fallback was started from it. */
  fellBackTo: number | undefined;
  /** Set when a delivered/read receipt arrived after the fallback had already gone out. */
  deliveredAfterFallback: boolean;
}

export interface Verification {
  id: string;
  tenant: string;
  to: string;
  kind: 'phone' | 'email';
  country: string | undefined;
  purpose: string;
  locale: Locale;
  plan: Channel[];
  status: VerificationStatus;
  attempts: number;
  maxAttempts: number;
  codeLength: number;
  deliveryTimeoutSeconds: number;
  createdAt: number;
  expiresAt: number;
  approvedAt: number | undefined;
  endedAt: number | undefined;
  lastSendAt: number;
  deliveries: Delivery[];
}

/** Status as a client should see it now: a pending verification past its expiry is expired. */
export function effectiveStatus(verification: Pick<Verification, 'status' | 'expiresAt'>, now: number): VerificationStatus {
  return verification.status === 'pending' && now >= verification.expiresAt ? 'expired' : verification.status;
}

/** The channel a fallback from `current` moves to, or undefined when the plan is exhausted. */
export function nextChannel(plan: readonly Channel[], current: Channel): Channel | undefined {
  const index = plan.indexOf(current);
  if (index >= 0) return plan[index + 1];
  return plan.find((channel) => channel !== current);
}
