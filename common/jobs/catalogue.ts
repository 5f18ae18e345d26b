import { z } from 'zod';
import { CHANNELS, type Channel } from '../domain/channel.js';
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
  receipts: 'receipts',
  deliveryTimeout: 'delivery-timeout',
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

/** A receipt as the webhook receiver normalised it (the raw event may carry the message text). */
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

export const JOB_NAMES = { send: 'send', receipt: 'receipt', deliveryTimeout: 'delivery-timeout' } as const;

/** BullMQ refuses ':' in custom ids, hence the dashes. */
export const jobIds = {
  send: (id: string, delivery: number) => `send-${id}-${delivery}`,
  deliveryTimeout: (id: string, delivery: number) => `timeout-${id}-${delivery}`,
  receipt: (eventDigest: string) => `receipt-${eventDigest}`,
};
