import { z } from 'zod';
import { CHANNELS, type Channel } from '../domain/channel.js';
import { VERIFICATION_STATUSES } from '../domain/verification.js';
import { RECEIPT_STATUSES } from '../providers/provider.js';

/**
 * The job catalogue: every queue, every job name, the schema of every payload and the
 * deterministic job ids. Producers and processors both go through here, and processors parse
 * the payload before using it. No payload ever holds a code or a message text.
 */

export const QUEUES = {
  sendWhatsapp: 'send-whatsapp',
  sendSms: 'send-sms',
  sendEmail: 'send-email',
  /**
   * No longer produced: the webhook applies receipts itself (common/delivery/receipt.ts). Its
   * workers stay to drain the jobs an earlier version queued, so an upgrade loses none.
   */
  receipts: 'receipts',
  /** Timeouts of their own, for the deliveries whose deadline could not go on the verification's timer. */
  deliveryTimeout: 'delivery-timeout',
  callbacks: 'callbacks',
  verificationExpiry: 'verification-expiry',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

export const SEND_QUEUE: Record<Channel, QueueName> = {
  whatsapp: QUEUES.sendWhatsapp,
  sms: QUEUES.sendSms,
  email: QUEUES.sendEmail,
};

const verificationId = z.string().regex(/^ver_[A-Za-z0-9]{10,40}$/);
const deliveryNumber = z.number().int().min(1).max(100);

export const sendJobSchema = z.strictObject({
  verificationId,
  delivery: deliveryNumber,
  /** Request id of the API call that caused this send, for log correlation. */
  requestId: z.string().max(100).optional(),
});
export type SendJob = z.infer<typeof sendJobSchema>;

export const deliveryTimeoutJobSchema = z.strictObject({ verificationId, delivery: deliveryNumber });
export type DeliveryTimeoutJob = z.infer<typeof deliveryTimeoutJobSchema>;

/** A receipt as the webhook receiver of an earlier version queued it (the raw event may carry the message text). */
export const receiptJobSchema = z.strictObject({
  eventId: z.string().min(1).max(200),
  eventType: z.string().max(100),
  provider: z.string().max(40),
  channel: z.enum(CHANNELS),
  providerMessageId: z.string().max(255),
  externalId: z.string().max(255).optional(),
  status: z.enum(RECEIPT_STATUSES),
  errorCode: z.string().max(64).optional(),
  occurredAt: z.number().int().nonnegative(),
  receivedAt: z.number().int().nonnegative(),
});
export type ReceiptJob = z.infer<typeof receiptJobSchema>;

/**
 * The verification's timer (`expire-<id>`, one delayed job per verification): due at its
 * `expiresAt`, where it ends a verification still pending, and moved earlier to a delivery's
 * timeout while one is armed (JobQueues.armDeliveryTimeout); its handler does what is due and
 * sleeps until the next deadline. `expiresAt` is missing in jobs queued by earlier versions.
 */
export const verificationExpiryJobSchema = z.strictObject({ verificationId, expiresAt: z.number().int().nonnegative().optional() });
export type VerificationExpiryJob = z.infer<typeof verificationExpiryJobSchema>;

/**
 * Tenant callbacks (DESIGN.md flow step 6). The event is built once, when it happens, and posted
 * byte for byte the same on every attempt; only the signature's timestamp changes. It carries the
 * destination (the tenant's own data) but never a code.
 */
export const CALLBACK_EVENT_TYPES = [
  'verification.delivered',
  'verification.fallback',
  'verification.approved',
  'verification.expired',
  'verification.failed',
] as const;
export type CallbackEventType = (typeof CALLBACK_EVENT_TYPES)[number];

const isoTime = z.iso.datetime();
const channel = z.enum(CHANNELS);
const eventVerification = z
  .strictObject({
    id: verificationId,
    status: z.enum(VERIFICATION_STATUSES),
    purpose: z.string().max(40),
    to: z.string().max(320).describe('The destination: E.164 number or lower-cased email address.'),
    channel: channel.describe('Channel of the latest delivery.'),
    deliveries: deliveryNumber.describe('Number of deliveries (messages) so far.'),
  })
  .describe('The verification when the event happened.');

/** One event type: members in the order they are posted (`id`, `type`, `createdAt`, `verification`, `data`). */
function eventOf<T extends CallbackEventType, D extends z.ZodType>(type: T, data: D) {
  return z.strictObject({
    id: z.string().regex(/^evt_[0-9a-f]{24}$/).describe('Unique per event; also in the `Kurir-Event-Id` header. Retries repeat it: deduplicate on it.'),
    type: z.literal(type),
    createdAt: isoTime.describe('When the event happened.'),
    verification: eventVerification,
    data,
  });
}

export const callbackEventSchema = z.discriminatedUnion('type', [
  eventOf(
    'verification.delivered',
    z.strictObject({ delivery: deliveryNumber, channel, status: z.enum(['delivered', 'read']), deliveredAt: isoTime }),
  ),
  eventOf(
    'verification.fallback',
    z.strictObject({ delivery: deliveryNumber, from: channel, to: channel, reason: z.enum(['failed', 'timeout', 'rejected']) }),
  ),
  eventOf('verification.approved', z.strictObject({ approvedAt: isoTime })),
  eventOf('verification.expired', z.strictObject({ expiresAt: isoTime })),
  eventOf('verification.failed', z.strictObject({ delivery: deliveryNumber, channel, errorCode: z.string().max(64).nullable() })),
]);
export type CallbackEvent = z.infer<typeof callbackEventSchema>;

export const callbackJobSchema = z.strictObject({
  tenant: z.string().min(1).max(40),
  url: z.string().min(1).max(2048),
  event: callbackEventSchema,
});
export type CallbackJob = z.infer<typeof callbackJobSchema>;

export const JOB_NAMES = {
  send: 'send',
  receipt: 'receipt',
  deliveryTimeout: 'delivery-timeout',
  callback: 'callback',
  verificationExpiry: 'verification-expiry',
} as const;

/** BullMQ refuses ':' in custom ids, hence the dashes. */
export const jobIds = {
  send: (id: string, delivery: number) => `send-${id}-${delivery}`,
  deliveryTimeout: (id: string, delivery: number) => `timeout-${id}-${delivery}`,
  /** Also the owner of a receipt's once-per-verification `delivered` claim (receiptOwner). */
  receipt: (eventDigest: string) => `receipt-${eventDigest}`,
  /** One job per event: `callback-ver_…-fallback-2`, `callback-ver_…-approved`. */
  callback: (id: string, type: CallbackEventType, n?: number) =>
    `callback-${id}-${type.slice('verification.'.length)}${n === undefined ? '' : `-${n}`}`,
  verificationExpiry: (id: string) => `expire-${id}`,
};
