/**
 * Magic destinations of the provider simulator: the destination alone decides how a send ends, so
 * every delivery path of Kurir (fallback, retries, timeouts, duplicate receipts…) can be driven over
 * real HTTP without a real phone. The recommended numbers are `+62812345610xx` (valid Indonesian
 * mobiles, so Kurir's number validation accepts them); only the last four digits matter.
 *
 * WhatsApp (`POST /v2/whatsapp/messages/sendDirectly`), by the last 4 digits of `to`:
 *
 * | last 4 | outcome name         | synchronous answer                                   | receipts (`whatsapp.message.updated`)        |
 * |--------|----------------------|------------------------------------------------------|----------------------------------------------|
 * | other  | `delivered`          | 200 `accepted`                                       | `sent`, `delivered`                          |
 * | 1001   | `failed_receipt`     | 200 `accepted`                                       | `sent`, `failed` (Meta 131049)               |
 * | 1002   | `sent_only`          | 200 `accepted`                                       | `sent` only — drives the delivery timeout    |
 * | 1003   | `not_whatsapp_user`  | 400 `PARAM_INVALID`, `whatsappApiError.code` 131026  | none                                         |
 * | 1004   | `unavailable`        | 503 `SERVICE_UNAVAILABLE` on every call              | none                                         |
 * | 1005   | `flaky`              | 503 on the first 2 calls per `externalId`, then 200  | `sent`, `delivered`                          |
 * | 1006   | `slow_receipt`       | 200 `accepted`                                       | `sent`, `delivered` after `slowReceiptMs`    |
 * | 1007   | `read_only`          | 200 `accepted`                                       | `read` only (Meta may skip `delivered`)      |
 * | 1008   | `duplicate_receipts` | 200 `accepted`                                       | `delivered`, `sent`, `delivered` again with the SAME event id and bytes |
 * | 1009   | `rate_limited`       | 429 `TOO_MANY_REQUESTS`, `Retry-After: 1`            | none                                         |
 *
 * SMS (`POST /v2/sms`) ignores the WhatsApp digits on purpose — a number that fails on WhatsApp must
 * still receive the fallback SMS:
 *
 * | last 4 | outcome name  | synchronous answer                       | receipts (`sms.message.updated`)   |
 * |--------|---------------|------------------------------------------|------------------------------------|
 * | other  | `delivered`   | 200 `accepted`                           | `sent`, `delivered`                |
 * | 2001   | `undelivered` | 200 `accepted`                           | `sent`, `undelivered` (30008)      |
 * | 2004   | `unavailable` | 503 `SERVICE_UNAVAILABLE` on every call  | none                               |
 *
 * Email (`POST /v2/emails`), by the recipient address:
 *
 * | address                       | outcome name | receipts (`email.delivery.updated`) |
 * |-------------------------------|--------------|-------------------------------------|
 * | local part ends in `+bounce`  | `bounce`     | `sent`, `undelivered` (550)         |
 * | any other                     | `delivered`  | `sent`, `delivered`                 |
 *
 * Receipts follow each other `receiptDelayMs` apart (the slow one waits `slowReceiptMs`).
 */
import type { Channel } from '../common/domain/channel.js';

/** Outcome names, stable: they appear in `SimulatedMessage.outcome`, logs and the README. */
export type WhatsappOutcomeName =
  | 'delivered'
  | 'failed_receipt'
  | 'sent_only'
  | 'not_whatsapp_user'
  | 'unavailable'
  | 'flaky'
  | 'slow_receipt'
  | 'read_only'
  | 'duplicate_receipts'
  | 'rate_limited';
export type SmsOutcomeName = 'delivered' | 'undelivered' | 'unavailable';
export type EmailOutcomeName = 'delivered' | 'bounce';
export type OutcomeName = WhatsappOutcomeName | SmsOutcomeName | EmailOutcomeName;

/** Statuses the simulator reports in receipts, in YCloud's words (they differ per channel). */
export type SimulatedStatus = 'sent' | 'delivered' | 'read' | 'failed' | 'undelivered';

/** A synchronous non-200 answer, rendered as YCloud's `ErrorResponse`. */
export interface Refusal {
  httpStatus: number;
  /** YCloud `error.code`. */
  code: string;
  message: string;
  /** Sent as the `Retry-After` header (seconds). */
  retryAfterSeconds?: number;
  /** Meta's error object, present when YCloud reached Meta and Meta said no. */
  whatsappApiError?: { code: string; type: string; message: string };
}

/** The error carried by a failed/undelivered receipt. */
export interface ReceiptError {
  code: string;
  message: string;
  /** WhatsApp only: Meta's raw error object, as YCloud forwards it. */
  whatsappApiError?: { code: string; type: string; message: string; error_data?: { details: string } };
}

/**
 * One receipt of the plan. `repeat` re-posts the event of an earlier step verbatim (same event id,
 * same bytes), the way YCloud redelivers an event it thinks was not acknowledged.
 */
export type ReceiptStep =
  | { kind: 'status'; status: SimulatedStatus; delay: 'normal' | 'slow'; error?: ReceiptError }
  | { kind: 'repeat'; of: number; delay: 'normal' | 'slow' };

/** Everything the simulator needs to know to play one send. */
export interface Outcome {
  name: OutcomeName;
  /** Answer with this instead of 200; absent → 200. */
  refusal?: Refusal;
  /**
   * When set, `refusal` applies only to the first N calls for the same `externalId` (then the send
   * succeeds); when absent, to every call.
   */
  refuseFirstCalls?: number;
  /** Receipts posted after a 200, in order. */
  receipts: readonly ReceiptStep[];
}

/** Ready-made destinations for tests and docs, one per outcome. */
export const MAGIC_NUMBERS = {
  whatsappDelivered: '+6281234561000',
  whatsappFailedReceipt: '+6281234561001',
  whatsappSentOnly: '+6281234561002',
  whatsappNotWhatsappUser: '+6281234561003',
  whatsappUnavailable: '+6281234561004',
  whatsappFlaky: '+6281234561005',
  whatsappSlowReceipt: '+6281234561006',
  whatsappReadOnly: '+6281234561007',
  whatsappDuplicateReceipts: '+6281234561008',
  whatsappRateLimited: '+6281234561009',
  smsUndelivered: '+6281234562001',
  smsUnavailable: '+6281234562004',
  emailBounce: 'someone+bounce@example.com',
} as const;

const sent: ReceiptStep = { kind: 'status', status: 'sent', delay: 'normal' };
const delivered: ReceiptStep = { kind: 'status', status: 'delivered', delay: 'normal' };

const SERVICE_UNAVAILABLE: Refusal = {
  httpStatus: 503,
  code: 'SERVICE_UNAVAILABLE',
  message: 'The service is temporarily unavailable. (simulated)',
};

const WHATSAPP: Record<string, Outcome> = {
  '1001': {
    name: 'failed_receipt',
    receipts: [
      sent,
      {
        kind: 'status',
        status: 'failed',
        delay: 'normal',
        error: {
          code: '131049',
          message: 'This message was not delivered to maintain healthy ecosystem engagement.',
          whatsappApiError: {
            code: '131049',
            type: 'OAuthException',
            message: 'This message was not delivered to maintain healthy ecosystem engagement.',
            error_data: { details: 'In order to maintain a healthy ecosystem engagement, the message failed to be delivered.' },
          },
        },
      },
    ],
  },
  '1002': { name: 'sent_only', receipts: [sent] },
  '1003': {
    name: 'not_whatsapp_user',
    // YCloud documents no dedicated `error.code` for Meta's 131026 on sendDirectly; PARAM_INVALID with
    // `target: whatsappApiError` is our best reading, and Kurir decides on `whatsappApiError.code` anyway.
    refusal: {
      httpStatus: 400,
      code: 'PARAM_INVALID',
      message: 'Message undeliverable. (simulated)',
      whatsappApiError: { code: '131026', type: 'OAuthException', message: 'Message undeliverable' },
    },
    receipts: [],
  },
  '1004': { name: 'unavailable', refusal: SERVICE_UNAVAILABLE, receipts: [] },
  '1005': { name: 'flaky', refusal: SERVICE_UNAVAILABLE, refuseFirstCalls: 2, receipts: [sent, delivered] },
  '1006': { name: 'slow_receipt', receipts: [sent, { kind: 'status', status: 'delivered', delay: 'slow' }] },
  '1007': { name: 'read_only', receipts: [{ kind: 'status', status: 'read', delay: 'normal' }] },
  '1008': { name: 'duplicate_receipts', receipts: [delivered, sent, { kind: 'repeat', of: 0, delay: 'normal' }] },
  '1009': {
    name: 'rate_limited',
    refusal: {
      httpStatus: 429,
      code: 'TOO_MANY_REQUESTS',
      message: 'Too many requests. (simulated)',
      retryAfterSeconds: 1,
    },
    receipts: [],
  },
};

const SMS: Record<string, Outcome> = {
  '2001': {
    name: 'undelivered',
    receipts: [
      sent,
      {
        kind: 'status',
        status: 'undelivered',
        delay: 'normal',
        error: { code: '30008', message: 'Unknown error from the carrier. (simulated)' },
      },
    ],
  },
  '2004': { name: 'unavailable', refusal: SERVICE_UNAVAILABLE, receipts: [] },
};

const DELIVERED: Outcome = { name: 'delivered', receipts: [sent, delivered] };

const EMAIL_BOUNCE: Outcome = {
  name: 'bounce',
  receipts: [
    sent,
    {
      kind: 'status',
      status: 'undelivered',
      delay: 'normal',
      error: { code: '550', message: 'Mailbox unavailable. (simulated)' },
    },
  ],
};

/** Last four digits of a phone number, whatever its formatting. */
function lastFour(to: string): string {
  return to.replace(/\D/g, '').slice(-4);
}

/**
 * The outcome the simulator applies to a send on `channel` to `to` (E.164 number, or an email
 * address for `email`). Pure: no state — the "first N calls" counting of `flaky` is the caller's.
 */
export function outcomeFor(channel: Channel, to: string): Outcome {
  switch (channel) {
    case 'whatsapp':
      return WHATSAPP[lastFour(to)] ?? DELIVERED;
    case 'sms':
      return SMS[lastFour(to)] ?? DELIVERED;
    case 'email': {
      const at = to.lastIndexOf('@');
      const local = (at === -1 ? to : to.slice(0, at)).toLowerCase();
      return local.endsWith('+bounce') ? EMAIL_BOUNCE : DELIVERED;
    }
  }
}
