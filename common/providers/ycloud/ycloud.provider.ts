import { z } from 'zod';

import type { Channel } from '../../domain/channel.js';
import type {
  EmailMessage,
  LookupResult,
  SentLookup,
  MessagingProvider,
  OutboundMessage,
  Receipt,
  ReceiptStatus,
  SendResult,
  SmsMessage,
  WhatsAppOtpMessage,
} from '../provider.js';
import { createKeepAliveTransport, type HttpTransport } from '../../http/keep-alive-transport.js';
import {
  failedOnSubmit,
  invalidSuccessResponse,
} from './ycloud-errors.js';
import { callYCloud } from './ycloud-http.js';
import { lookupSent } from './ycloud-lookup.js';

/**
 * YCloud adapter for all three channels (WhatsApp templates via `sendDirectly`, SMS, email).
 * Wire formats follow `shared/reference/ycloud-openapi-v2.yaml`; the test suite validates the
 * bodies we send against that spec.
 */

/** Options of {@link createYCloudProvider}; the composition root builds them from config. */
export interface YCloudProviderOptions {
  /** API root including the version, e.g. `https://api.ycloud.com/v2`. */
  baseUrl: string;
  /** Sent as `X-API-Key`; never logged or put in errors. */
  apiKey: string;
  /** Our WhatsApp business number (E.164), the `from` of every template message. */
  whatsappFrom: string;
  /** SMS sender id; omitted from the request when unset so YCloud picks its default route. */
  smsSenderId?: string | undefined;
  /** Sender address on a verified domain, `support@example.com` or `Name<support@example.com>`. */
  emailFrom: string;
  /** Deadline for one HTTP call, body included. */
  timeoutMs: number;
  /** The HTTP client; a shared keep-alive pool per process. Defaults to a pool of its own. */
  transport?: HttpTransport;
}

/** Creates the YCloud {@link MessagingProvider}. Stateless: safe to share across concurrent jobs. */
export function createYCloudProvider(options: YCloudProviderOptions): MessagingProvider {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const transport = options.transport ?? createKeepAliveTransport().send;

  async function post(
    channel: Channel,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
  ): Promise<SendResult> {
    // The deadline covers the body too: a server that sends headers and then stalls must not
    // hold a worker slot forever.
    const reply = await callYCloud(
      channel,
      `${baseUrl}${path}`,
      {
        method: 'POST',
        headers: {
          'X-API-Key': options.apiKey,
          'Content-Type': 'application/json',
          Accept: 'application/json',
        },
        body: JSON.stringify(body),
        timeoutMs: options.timeoutMs,
        signal,
      },
      transport,
    );
    return readSuccess(channel, reply.status, reply.text);
  }

  return {
    name: 'ycloud',

    async send(message: OutboundMessage, sendOptions?: { signal?: AbortSignal }): Promise<SendResult> {
      const signal = sendOptions?.signal;
      switch (message.channel) {
        case 'whatsapp':
          return await post(
            'whatsapp',
            '/whatsapp/messages/sendDirectly',
            whatsappBody(message, options.whatsappFrom),
            signal,
          );
        case 'sms':
          return await post('sms', '/sms', smsBody(message, options.smsSenderId), signal);
        case 'email':
          return await post('email', '/emails', emailBody(message, options.emailFrom), signal);
      }
    },

    parseReceipt,

    async lookup(query: SentLookup, lookupOptions?: { signal?: AbortSignal }): Promise<LookupResult> {
      return await lookupSent(
        query,
        { baseUrl, apiKey: options.apiKey, timeoutMs: options.timeoutMs, transport, mapStatus },
        lookupOptions?.signal,
      );
    },
  };
}

/**
 * `sendDirectly` (not the queued endpoint) because YCloud submits to Meta synchronously there:
 * Meta's refusal (131026…) comes back in the response, so the fallback can start at once.
 */
function whatsappBody(message: WhatsAppOtpMessage, from: string): unknown {
  return {
    from,
    to: message.to,
    type: 'template',
    externalId: message.externalId,
    template: {
      name: message.templateName,
      // `deterministic` is the only policy the spec knows: use exactly this language.
      language: { code: message.templateLanguage, policy: 'deterministic' },
      components: [
        { type: 'body', parameters: [{ type: 'text', text: message.code }] },
        // Authentication OTP buttons are stored by Meta as URL buttons, hence `url`. The spec
        // types `index` as an integer 0–9 (YCloud's examples send the string "0"); we follow
        // the schema so the request validates against it.
        { type: 'button', sub_type: 'url', index: 0, parameters: [{ type: 'text', text: message.code }] },
      ],
    },
  };
}

function smsBody(message: SmsMessage, senderId: string | undefined): unknown {
  return {
    to: message.to,
    text: message.text,
    externalId: message.externalId,
    ...(senderId === undefined ? {} : { senderId }),
  };
}

/** YCloud takes one body per email; the HTML part wins because opens/clicks are only counted for it. */
function emailBody(message: EmailMessage, from: string): unknown {
  return {
    from,
    to: message.to,
    subject: message.subject,
    content: message.html,
    contentType: 'text/html',
    externalId: message.externalId,
  };
}

/**
 * Vendor status words → ours. Email says `sending` where the others say `accepted`; SMS and
 * email say `undelivered` for what we call `failed`.
 */
const STATUS_MAP: Readonly<Record<string, ReceiptStatus>> = {
  accepted: 'accepted',
  sending: 'accepted',
  sent: 'sent',
  delivered: 'delivered',
  read: 'read',
  failed: 'failed',
  undelivered: 'failed',
};

function mapStatus(status: string | undefined): ReceiptStatus | undefined {
  return status !== undefined && Object.hasOwn(STATUS_MAP, status) ? STATUS_MAP[status] : undefined;
}

/** Meta and YCloud disagree on number vs string for codes; we compare them as strings. */
const codeValue = z.union([z.string(), z.number()]).transform(String);
/** A field we can live without: a wrong type reads as absent instead of rejecting the object. */
const optionalString = z.string().optional().catch(undefined);

const sendResponseSchema = z.object({
  id: z.string().min(1),
  status: optionalString,
  errorCode: codeValue.optional().catch(undefined),
  whatsappApiError: z.object({ code: codeValue.optional().catch(undefined) }).optional().catch(undefined),
});

function readSuccess(channel: Channel, httpStatus: number, text: string): SendResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw invalidSuccessResponse(channel, httpStatus);
  }
  const parsed = sendResponseSchema.safeParse(json);
  if (!parsed.success) throw invalidSuccessResponse(channel, httpStatus);
  const body = parsed.data;
  // A status we do not know yet still came with a 2xx and an id: the message was taken.
  const status = mapStatus(body.status) ?? 'accepted';
  if (status === 'failed') {
    throw failedOnSubmit(channel, httpStatus, {
      errorCode: body.errorCode,
      whatsappApiErrorCode: body.whatsappApiError?.code,
    });
  }
  return { providerMessageId: body.id, status };
}

// Webhook objects: only the fields we read are declared; everything else passes through
// unchecked, because YCloud adds fields and enum values without calling it a breaking change.

const whatsappMessageSchema = z.object({
  id: z.string().min(1),
  status: z.string(),
  externalId: optionalString,
  errorCode: codeValue.optional().catch(undefined),
  whatsappApiError: z.object({ code: codeValue.optional().catch(undefined) }).optional().catch(undefined),
  updateTime: optionalString,
  sendTime: optionalString,
  deliverTime: optionalString,
  readTime: optionalString,
});

const smsSchema = z.object({
  id: z.string().min(1),
  status: z.string(),
  externalId: optionalString,
  errorCode: codeValue.optional().catch(undefined),
  updateTime: optionalString,
});

const emailDeliverySchema = z.object({
  emailId: z.string().min(1),
  status: z.string(),
  externalId: optionalString,
  errorCode: codeValue.optional().catch(undefined),
});

const eventSchema = z.object({
  type: z.string(),
  createTime: optionalString,
  whatsappMessage: z.unknown().optional(),
  sms: z.unknown().optional(),
  emailDelivery: z.unknown().optional(),
});

/** First parseable RFC 3339 time among the candidates, as epoch ms. */
function firstTime(...candidates: (string | undefined)[]): number | undefined {
  for (const candidate of candidates) {
    if (candidate === undefined) continue;
    const ms = Date.parse(candidate);
    if (!Number.isNaN(ms)) return ms;
  }
  return undefined;
}

/** The timestamp YCloud keeps for this particular status, when it keeps one. */
function whatsappStatusTime(
  status: ReceiptStatus,
  message: { sendTime?: string | undefined; deliverTime?: string | undefined; readTime?: string | undefined },
): string | undefined {
  switch (status) {
    case 'sent':
      return message.sendTime;
    case 'delivered':
      return message.deliverTime;
    case 'read':
      return message.readTime;
    default:
      return undefined;
  }
}

/**
 * Turns a YCloud webhook event into a {@link Receipt}. Returns `null` for event types that are
 * not delivery updates, for a status word we do not know (better to ignore one event than to
 * guess its meaning), and for an event missing the message id (nothing to correlate it with).
 */
export function parseReceipt(event: unknown): Receipt | null {
  const envelope = eventSchema.safeParse(event);
  if (!envelope.success) return null;
  const { type, createTime } = envelope.data;

  switch (type) {
    case 'whatsapp.message.updated': {
      const parsed = whatsappMessageSchema.safeParse(envelope.data.whatsappMessage);
      if (!parsed.success) return null;
      const message = parsed.data;
      const status = mapStatus(message.status);
      if (status === undefined) return null;
      // The time of the status itself first; `updateTime` is the next best thing.
      const statusTime = whatsappStatusTime(status, message);
      return {
        channel: 'whatsapp',
        providerMessageId: message.id,
        externalId: message.externalId,
        status,
        // Meta's code says why (131026…); YCloud's `errorCode` usually mirrors it, but is the only
        // one present for YCloud-side skips such as RECIPIENT_IN_BLOCK_LIST.
        errorCode: status === 'failed' ? (message.whatsappApiError?.code ?? message.errorCode) : undefined,
        occurredAt: firstTime(statusTime, message.updateTime, createTime) ?? Date.now(),
      };
    }
    case 'sms.message.updated': {
      const parsed = smsSchema.safeParse(envelope.data.sms);
      if (!parsed.success) return null;
      const sms = parsed.data;
      const status = mapStatus(sms.status);
      if (status === undefined) return null;
      return {
        channel: 'sms',
        providerMessageId: sms.id,
        externalId: sms.externalId,
        status,
        errorCode: status === 'failed' ? sms.errorCode : undefined,
        occurredAt: firstTime(sms.updateTime, createTime) ?? Date.now(),
      };
    }
    case 'email.delivery.updated': {
      const parsed = emailDeliverySchema.safeParse(envelope.data.emailDelivery);
      if (!parsed.success) return null;
      const delivery = parsed.data;
      const status = mapStatus(delivery.status);
      if (status === undefined) return null;
      return {
        channel: 'email',
        providerMessageId: delivery.emailId,
        externalId: delivery.externalId,
        status,
        errorCode: status === 'failed' ? delivery.errorCode : undefined,
        // EmailDelivery carries no timestamp of its own in the spec.
        occurredAt: firstTime(createTime) ?? Date.now(),
      };
    }
    default:
      return null;
  }
}
