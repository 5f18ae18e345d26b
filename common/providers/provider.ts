import type { Channel } from '../domain/channel.js';

/**
 * The one interface services use to reach a messaging vendor. Adapters are stateless: every
 * call carries everything it needs, so one instance is safely shared by concurrent jobs.
 */
export interface MessagingProvider {
  /** Stable provider name, used in delivery records and metric labels. */
  readonly name: string;
  /** Hands one rendered message to the vendor. Throws {@link ProviderError} on failure. */
  send(message: OutboundMessage, options?: { signal?: AbortSignal }): Promise<SendResult>;
  /**
   * Turns a verified webhook event into a delivery receipt, or `null` when the event is not
   * about a message delivery (template review, inbound message, an unknown type…).
   */
  parseReceipt(event: unknown): Receipt | null;
  /**
   * Asks the vendor whether it holds a message we may have sent: one whose send call got no
   * answer (timeout, lost connection) or whose worker died before recording the answer.
   * Resolves `unknown` where the vendor offers no way to look it up; throws
   * {@link ProviderError} when asking failed.
   */
  lookup(query: SentLookup, options?: { signal?: AbortSignal }): Promise<LookupResult>;
}

/** A message whose fate we do not know, and when the vendor could have created it. */
export interface SentLookup {
  channel: Channel;
  /** Our `externalId`, the only thing that names the message on both sides. */
  externalId: string;
  /** Epoch ms: from the start of the send call to its deadline, on our clock. */
  sentBetween: { from: number; to: number };
}

/**
 * - `found`: the vendor has it (send it again and the user gets it twice);
 * - `absent`: the vendor says it has no such message (sending now sends it once);
 * - `unknown`: the vendor cannot tell (no lookup for this channel, or too much traffic to search).
 */
export type LookupResult = { kind: 'found'; sent: SendResult } | { kind: 'absent' } | { kind: 'unknown'; reason: string };

/** A message rendered for one channel; the adapter only maps it onto the vendor's wire format. */
export type OutboundMessage = WhatsAppOtpMessage | SmsMessage | EmailMessage;

interface OutboundBase {
  /** E.164 number, or a lower-cased email address for the email channel. */
  to: string;
  /** Our correlation id `<verificationId>-<delivery n>`, echoed back on every receipt. */
  externalId: string;
}

/** An approved WhatsApp authentication template; the code goes in the body and the OTP button. */
export interface WhatsAppOtpMessage extends OutboundBase {
  channel: 'whatsapp';
  templateName: string;
  /** Meta language code of the approved template, e.g. `en_US`, `pt_BR`, `id`. */
  templateLanguage: string;
  code: string;
}

export interface SmsMessage extends OutboundBase {
  channel: 'sms';
  text: string;
}

export interface EmailMessage extends OutboundBase {
  channel: 'email';
  subject: string;
  text: string;
  html: string;
}

/** Delivery statuses as Kurir understands them, whatever the vendor's own words. */
export const RECEIPT_STATUSES = ['accepted', 'sent', 'delivered', 'read', 'failed'] as const;
export type ReceiptStatus = (typeof RECEIPT_STATUSES)[number];

export interface SendResult {
  providerMessageId: string;
  /** What the vendor said synchronously: usually `accepted` or `sent`. */
  status: ReceiptStatus;
}

export interface Receipt {
  channel: Channel;
  providerMessageId: string;
  /** Our `externalId` when the vendor echoed it; the primary way to find the delivery. */
  externalId?: string | undefined;
  status: ReceiptStatus;
  /** Vendor or Meta error code when `failed`, e.g. `"131026"`. */
  errorCode?: string | undefined;
  /** When the vendor says the status changed (epoch ms). */
  occurredAt: number;
}

/**
 * How the orchestrator should react to a failed send:
 * - `transient`: worth retrying this delivery with backoff (5xx, timeouts, connection errors);
 * - `rate_limited`: the vendor or Meta throttled us; retrying an OTP only makes it later, so
 *   move to the next channel at once when there is one;
 * - `permanent`: this delivery can never succeed (bad number, not a WhatsApp user, config);
 *   end it and fall back now.
 */
export type ProviderErrorKind = 'transient' | 'rate_limited' | 'permanent';

export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  /** Stable short code, e.g. `http_503`, `timeout`, `whatsapp_131026`, `PARAM_INVALID`. */
  readonly code: string;
  readonly kind: ProviderErrorKind;
  readonly httpStatus: number | undefined;
  /** Seconds the vendor asked us to wait (`Retry-After`), when it said so. */
  readonly retryAfterSeconds: number | undefined;
  /** True when the vendor told us the destination has no WhatsApp account (Meta 131026). */
  readonly notOnWhatsApp: boolean;
  /**
   * True when the vendor may have taken the message although we got no usable answer (a timeout
   * or a connection lost after the request went out): sending again may send it twice.
   */
  readonly outcomeUnknown: boolean;

  constructor(
    message: string,
    details: {
      code: string;
      kind: ProviderErrorKind;
      httpStatus?: number | undefined;
      retryAfterSeconds?: number | undefined;
      notOnWhatsApp?: boolean;
      outcomeUnknown?: boolean;
      cause?: unknown;
    },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = details.code;
    this.kind = details.kind;
    this.httpStatus = details.httpStatus;
    this.retryAfterSeconds = details.retryAfterSeconds;
    this.notOnWhatsApp = details.notOnWhatsApp ?? false;
    this.outcomeUnknown = details.outcomeUnknown ?? false;
  }

  get retryable(): boolean {
    return this.kind === 'transient';
  }
}
