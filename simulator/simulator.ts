/**
 * Provider simulator: a loopback HTTP server that speaks YCloud's v2 contract (same paths, auth
 * header, payloads, error envelope, signed webhook receipts), so Kurir's production YCloud adapter
 * is what runs against it. Which way a send goes is decided by the destination alone — see
 * `magic-numbers.ts`.
 *
 * It is a test double, not a model of YCloud's internals: state lives in memory, ids are random,
 * prices are flat fakes, and only the endpoints Kurir calls exist.
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { z } from 'zod';
import type { Channel } from '../common/domain/channel.js';
import { createKeepAliveTransport } from '../common/http/keep-alive-transport.js';
import { signatureHeader } from '../common/providers/ycloud/ycloud-signature.js';
import { parseSmsListQuery, SmsRecords } from './sms-records.js';
import { outcomeFor, type Outcome, type Refusal, type ReceiptStep, type SimulatedStatus } from './magic-numbers.js';

/** How to start a simulator. */
export interface SimulatorOptions {
  /** TCP port; `0` picks a free one (read it back from {@link Simulator.url}). */
  port: number;
  /** Interface to bind; defaults to `127.0.0.1` because this is a loopback test double. */
  host?: string;
  /** Value every `/v2` call must carry in `X-API-Key`; anything else gets YCloud's 401. */
  apiKey: string;
  /** Webhook endpoint secret used to sign receipts (`YCloud-Signature: t=…,s=…`). */
  webhookSecret: string;
  /** Where receipts are POSTed (Kurir's `/v1/webhooks/ycloud`); read at post time, see `setWebhookUrl`. */
  webhookUrl: string;
  /** Pause before each receipt of a send (e.g. 150 ms; 10 ms in tests). */
  receiptDelayMs: number;
  /** Pause before the receipt of the `slow_receipt` outcome (e.g. 45 000 ms; a few hundred in tests). */
  slowReceiptMs: number;
  /** Pause between tries of a receipt POST that failed (default 200 ms; YCloud waits 10 s, 30 s, …). */
  receiptRetryDelayMs?: number;
  /** Called once per accepted (200) send, after it is recorded. Exceptions are swallowed. */
  onMessage?: (message: SimulatedMessage) => void;
  /** Called when a receipt could not be delivered after every try (e.g. Kurir is not running). */
  onReceiptFailed?: (failure: ReceiptFailure) => void;
}

/** The options without the callbacks: what can be handed to another thread. */
export type SimulatorSettings = Omit<SimulatorOptions, 'onMessage' | 'onReceiptFailed'>;

/** A receipt the simulator gave up on. */
export interface ReceiptFailure {
  eventId: string;
  eventType: string;
  url: string;
  attempts: number;
  /** Last error: `HTTP 500`, `fetch failed`, … */
  reason: string;
}

/** A running simulator. */
export interface Simulator {
  /** Origin, e.g. `http://127.0.0.1:4010`; Kurir's `YCLOUD_BASE_URL` is `url + '/v2'`. */
  readonly url: string;
  /** Every send call ever received, in order, including refused ones (see `httpStatus`). */
  messages(): SimulatedMessage[];
  /** `messages()` for one destination (phone number, or email address compared case-insensitively). */
  messagesTo(to: string): SimulatedMessage[];
  /**
   * Resolves with the first message, already received or still to come, matching `predicate`;
   * rejects after `timeoutMs` (default 5000) or when the simulator closes.
   */
  waitForMessage(predicate: (m: SimulatedMessage) => boolean, timeoutMs?: number): Promise<SimulatedMessage>;
  /** Redirects receipts, including those still pending for earlier sends. */
  setWebhookUrl(url: string): void;
  /** Stops the server, cancels pending receipts and in-flight receipt POSTs. Idempotent. */
  close(): Promise<void>;
}

/** One provider call as the simulator saw it. */
export interface SimulatedMessage {
  /** Provider message id returned to the caller; `''` for refused calls. */
  readonly id: string;
  readonly channel: Channel;
  /** E.164 number, or the lower-cased recipient address(es) for email (comma-separated when several). */
  readonly to: string;
  readonly externalId?: string;
  /** WhatsApp: the template body parameter; SMS/email: the first run of 4–10 digits of the text. */
  readonly code?: string;
  /** SMS text, or email subject. */
  readonly text?: string;
  /** What the simulator answered. */
  readonly httpStatus: number;
  /** Epoch ms. */
  readonly receivedAt: number;
  /** Magic outcome name (`delivered`, `failed_receipt`, …), or `unauthorized` / `invalid_request`. */
  readonly outcome: string;
}

const RECEIPT_ATTEMPTS = 3;
const DEFAULT_RETRY_DELAY_MS = 200;
// Kurir must answer webhooks fast (YCloud deprioritises > 10 s); a hung receiver must not pin us.
const RECEIPT_TIMEOUT_MS = 5_000;
const DEFAULT_WAIT_MS = 5_000;
const MAX_BODY_BYTES = 1024 * 1024;
const SIM_WABA_ID = 'sim_waba_000000000001';

type JsonObject = Record<string, unknown>;

type EventType = 'whatsapp.message.updated' | 'sms.message.updated' | 'email.delivery.updated';

/** YCloud `Event` envelope, limited to the three types the simulator emits. */
interface YCloudEvent {
  id: string;
  type: EventType;
  apiVersion: 'v2';
  createTime: string;
  whatsappMessage?: JsonObject;
  sms?: JsonObject;
  emailDelivery?: JsonObject;
}

type StatusStep = Extract<ReceiptStep, { kind: 'status' }>;

/** The receipts of one recipient of one accepted send. */
interface ReceiptPlan {
  steps: readonly ReceiptStep[];
  /** Builds the event for a status step at the moment it is posted, so times are real. */
  eventFor(step: StatusStep, at: Date): YCloudEvent;
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** What handling one send call produced: the answer, what to record, and receipts to play. */
interface SendResult {
  reply: Reply;
  record: Omit<SimulatedMessage, 'channel' | 'httpStatus' | 'receivedAt'>;
  plans: ReceiptPlan[];
  /** An accepted SMS as `GET /v2/sms` lists it; its status follows the receipts. */
  listed?: JsonObject;
}

/** Per-call context handed to the pure-ish send handlers. */
interface SendContext {
  requestId: string;
  now: Date;
  /** Counts calls per key and returns this call's number (1-based); only `flaky` uses it. */
  countCall(key: string): number;
}

const SEND_ENDPOINTS: Readonly<Record<string, Channel>> = {
  '/v2/whatsapp/messages/sendDirectly': 'whatsapp',
  '/v2/sms': 'sms',
  '/v2/emails': 'email',
};

/** Starts a simulator and resolves once it listens. */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const host = options.host ?? '127.0.0.1';
  const retryDelayMs = options.receiptRetryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
  const log: SimulatedMessage[] = [];
  const smsRecords = new SmsRecords();
  const callCounts = new Map<string, number>();
  const waiters = new Set<Waiter>();
  const pipelines = new Set<Promise<void>>();
  // One controller for everything asynchronous we own: aborting it cancels every pending receipt
  // delay and every in-flight POST, which is what lets close() leave nothing behind.
  const lifetime = new AbortController();
  // Receipts go out on a keep-alive pool: a receipt per status per send is most of its traffic.
  const http = createKeepAliveTransport();
  const signal = lifetime.signal;
  // Every pending receipt listens on it: hundreds at once under load are expected, not a leak.
  setMaxListeners(0, signal);
  let webhookUrl = options.webhookUrl;
  let closing: Promise<void> | undefined;

  function record(message: SimulatedMessage): void {
    log.push(message);
    for (const waiter of [...waiters]) {
      let matched: boolean;
      try {
        matched = waiter.predicate(message);
      } catch (error) {
        settle(waiter, () => waiter.reject(error));
        continue;
      }
      if (matched) settle(waiter, () => waiter.resolve(message));
    }
  }

  function settle(waiter: Waiter, action: () => void): void {
    clearTimeout(waiter.timer);
    waiters.delete(waiter);
    action();
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://simulator.invalid');
    if (req.method === 'GET' && url.pathname === '/_simulator/healthz') {
      req.resume();
      return await respond(res, { status: 200, body: { status: 'ok' } });
    }
    if (req.method === 'GET' && url.pathname === '/_simulator/messages') {
      req.resume();
      const to = url.searchParams.get('to');
      return await respond(res, { status: 200, body: to === null ? log : filterTo(log, to) });
    }

    const requestId = `req_${randomBytes(12).toString('base64url')}`;
    if (req.method === 'GET' && url.pathname === '/v2/sms') {
      req.resume();
      if (req.headers['x-api-key'] !== options.apiKey) {
        return await respond(res, unauthorized(requestId));
      }
      const parsedQuery = parseSmsListQuery(url.searchParams, Date.now());
      if (!parsedQuery.ok) return await respond(res, paramInvalid(requestId, parsedQuery.message, ''));
      return await respond(res, { status: 200, body: smsRecords.list(parsedQuery.query), headers: { 'ycloud-request-id': requestId } });
    }
    const channel = req.method === 'POST' ? SEND_ENDPOINTS[url.pathname] : undefined;
    if (channel === undefined) {
      req.resume();
      return await respond(res, errorReply(requestId, 404, 'NOT_FOUND', 'The requested resource does not exist.'));
    }

    const raw = await readBody(req);
    const receivedAt = Date.now();
    const parsed = raw === 'too_large' ? undefined : parseJson(raw);

    let result: SendResult;
    if (req.headers['x-api-key'] !== options.apiKey) {
      result = refused(
        unauthorized(requestId),
        bestEffortTo(parsed),
        'unauthorized',
      );
    } else if (raw === 'too_large') {
      result = refused(errorReply(requestId, 413, 'PAYLOAD_TOO_LARGE', 'Request body too large.'), '', 'invalid_request');
    } else if (parsed === undefined) {
      result = refused(paramInvalid(requestId, 'Request body must be a JSON object.', ''), '', 'invalid_request');
    } else {
      const context: SendContext = {
        requestId,
        now: new Date(receivedAt),
        countCall: (key) => {
          const n = (callCounts.get(key) ?? 0) + 1;
          callCounts.set(key, n);
          return n;
        },
      };
      result = handleSend(channel, parsed, context);
    }

    const message: SimulatedMessage = Object.freeze({
      ...result.record,
      channel,
      httpStatus: result.reply.status,
      receivedAt,
    });
    // Recorded before answering, so a caller that awaited the response always finds its message.
    record(message);
    if (result.reply.status === 200 && result.listed !== undefined) smsRecords.add(result.listed, receivedAt);
    await respond(res, { ...result.reply, headers: { 'ycloud-request-id': requestId, ...result.reply.headers } });
    if (result.reply.status === 200) {
      try {
        options.onMessage?.(message);
      } catch {
        // A faulty observer must not break the provider contract.
      }
      // Receipts start only after the 200 is on the wire, so Kurir gets the provider id first
      // (the delay keeps it that way even with YCloud-like racing).
      for (const plan of result.plans) startReceipts(plan);
    }
  }

  function startReceipts(plan: ReceiptPlan): void {
    if (signal.aborted) return;
    const run: Promise<void> = playReceipts(plan)
      .catch(() => {
        // Only an abort (close) gets here: delivery failures are reported, never thrown.
      })
      .finally(() => pipelines.delete(run));
    pipelines.add(run);
  }

  async function playReceipts(plan: ReceiptPlan): Promise<void> {
    const posted: PostedEvent[] = [];
    for (const step of plan.steps) {
      await delay(step.delay === 'slow' ? options.slowReceiptMs : options.receiptDelayMs, undefined, { signal });
      let event: PostedEvent | undefined;
      if (step.kind === 'repeat') {
        // Verbatim bytes and id: a redelivery, not a new event.
        event = posted[step.of];
      } else {
        const built = plan.eventFor(step, new Date());
        event = { id: built.id, type: built.type, body: Buffer.from(JSON.stringify(built)) };
      }
      if (event === undefined) continue;
      posted.push(event);
      await postReceipt(event);
    }
  }

  async function postReceipt(event: PostedEvent): Promise<void> {
    let reason = '';
    let url = webhookUrl;
    for (let attempt = 1; attempt <= RECEIPT_ATTEMPTS; attempt += 1) {
      if (attempt > 1) await delay(retryDelayMs, undefined, { signal });
      url = webhookUrl;
      try {
        const response = await http.send(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'Kurir-YCloud-Simulator/1',
            // Signed per try, like YCloud: the timestamp is the time of sending, the bytes never change.
            'ycloud-signature': signatureHeader(options.webhookSecret, Math.floor(Date.now() / 1000), event.body),
          },
          body: event.body,
          timeoutMs: RECEIPT_TIMEOUT_MS,
          signal,
        });
        if (response.status >= 200 && response.status < 300) return;
        reason = `HTTP ${response.status}`;
      } catch (error) {
        if (signal.aborted) throw error;
        reason = describe(error);
      }
    }
    try {
      options.onReceiptFailed?.({ eventId: event.id, eventType: event.type, url, attempts: RECEIPT_ATTEMPTS, reason });
    } catch {
      // Reporting is best effort; a throwing observer must not surface inside a timer.
    }
  }

  const server = createServer((req, res) => {
    onRequest(req, res).catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { status: 500, code: 'INTERNAL_SERVER_ERROR', message: 'Simulator error.' } }));
      } else {
        res.destroy();
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;

  async function shutdown(): Promise<void> {
    // Each step guarded: one failure must never skip the rest of the cleanup.
    lifetime.abort();
    for (const waiter of [...waiters]) {
      settle(waiter, () => waiter.reject(new Error('simulator closed')));
    }
    try {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive sockets from Kurir's HTTP client would otherwise hold close() open.
        server.closeAllConnections();
      });
    } catch {
      // Already closed.
    }
    await Promise.allSettled([...pipelines]);
    http.close();
  }

  return {
    url,
    messages: () => [...log],
    messagesTo: (to) => filterTo(log, to),
    waitForMessage(predicate, timeoutMs = DEFAULT_WAIT_MS) {
      return new Promise<SimulatedMessage>((resolve, reject) => {
        const existing = log.find(predicate);
        if (existing !== undefined) return resolve(existing);
        if (closing !== undefined) return reject(new Error('simulator closed'));
        const waiter: Waiter = {
          predicate,
          resolve,
          reject,
          timer: setTimeout(() => {
            settle(waiter, () => reject(new Error(`no matching simulator message within ${timeoutMs} ms`)));
          }, timeoutMs),
        };
        waiters.add(waiter);
      });
    },
    setWebhookUrl(next) {
      webhookUrl = next;
    },
    close() {
      closing ??= shutdown();
      return closing;
    },
  };
}

interface Waiter {
  predicate: (m: SimulatedMessage) => boolean;
  resolve: (m: SimulatedMessage) => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout;
}

interface PostedEvent {
  id: string;
  type: EventType;
  body: Buffer;
}

// ---------------------------------------------------------------------------------------------
// Send handlers: (body, context) → answer + record + receipt plans. No I/O, no timers.
// ---------------------------------------------------------------------------------------------

const E164 = /^\+[1-9]\d{6,14}$/;
const phone = z.string({ error: 'must be a string' }).regex(E164, { error: 'must be a phone number in E.164 format' });
const text = z.string({ error: 'must be a string' });
const optionalId = z.string({ error: 'must be a string' }).max(256, { error: 'must be at most 256 characters' }).optional();

const whatsappRequest = z.object({
  from: phone,
  to: phone,
  type: z.literal('template', { error: 'must be "template" (the simulator only plays template messages)' }),
  template: z.looseObject({
    name: text.min(1, { error: 'must not be empty' }),
    language: z.looseObject({ code: text.min(1, { error: 'must not be empty' }), policy: text.optional() }),
    components: z
      .array(
        z.looseObject({
          type: text,
          parameters: z.array(z.looseObject({ type: text, text: text.optional() })).optional(),
        }),
      )
      .optional(),
  }),
  externalId: optionalId,
});

const smsRequest = z.object({
  to: phone,
  text: text.min(1, { error: 'must not be empty' }).max(1600, { error: 'must be at most 1600 characters' }),
  senderId: text.optional(),
  externalId: optionalId,
});

const emailRequest = z.object({
  from: text.min(1, { error: 'must not be empty' }),
  to: text.min(1, { error: 'must not be empty' }),
  subject: text.min(1, { error: 'must not be empty' }).max(255, { error: 'must be at most 255 characters' }),
  content: text.min(1, { error: 'must not be empty' }),
  contentType: z.enum(['text/html', 'text/plain'], { error: 'must be text/html or text/plain' }).optional(),
  externalId: optionalId,
});

function handleSend(channel: Channel, body: JsonObject, context: SendContext): SendResult {
  switch (channel) {
    case 'whatsapp':
      return handleWhatsapp(body, context);
    case 'sms':
      return handleSms(body, context);
    case 'email':
      return handleEmail(body, context);
  }
}

function handleWhatsapp(body: JsonObject, context: SendContext): SendResult {
  const parsed = whatsappRequest.safeParse(body);
  if (!parsed.success) return invalid(context, parsed.error, body);
  const request = parsed.data;
  const outcome = outcomeFor('whatsapp', request.to);
  const code = request.template.components
    ?.find((component) => component.type === 'body')
    ?.parameters?.find((parameter) => parameter.type === 'text')?.text;
  const base = { to: request.to, externalId: request.externalId, code, outcome: outcome.name };

  const refusal = refusalFor(outcome, `whatsapp:${request.externalId ?? request.to}`, context);
  if (refusal !== undefined) return refused(refusalReply(context.requestId, refusal), request.to, outcome.name, base);

  const id = newMessageId();
  const createTime = context.now.toISOString();
  const message: JsonObject = {
    id,
    wamid: `wamid.${randomBytes(24).toString('base64url')}`,
    wabaId: SIM_WABA_ID,
    from: request.from,
    to: request.to,
    type: 'template',
    template: request.template,
    externalId: request.externalId,
    status: 'accepted',
    createTime,
    updateTime: createTime,
    totalPrice: 0.03,
    currency: 'USD',
    regionCode: regionOf(request.to),
    pricingCategory: 'authentication',
    pricingModel: 'PMP',
    pricingType: 'regular',
    bizType: 'whatsapp',
  };
  // Meta's time fields accumulate; the first receipt implying a stage fixes its time.
  const times: { sendTime?: string; deliverTime?: string; readTime?: string } = {};
  const plan: ReceiptPlan = {
    steps: outcome.receipts,
    eventFor(step, at) {
      const now = at.toISOString();
      if (step.status !== 'failed') times.sendTime ??= now;
      if (step.status === 'delivered' || step.status === 'read') times.deliverTime ??= now;
      if (step.status === 'read') times.readTime ??= now;
      return event('whatsapp.message.updated', at, {
        whatsappMessage: {
          ...message,
          ...times,
          status: step.status,
          updateTime: now,
          errorCode: step.error?.code,
          errorMessage: step.error?.message,
          whatsappApiError: step.error?.whatsappApiError,
        },
      });
    },
  };
  return { reply: { status: 200, body: message }, record: { ...base, id }, plans: [plan] };
}

function handleSms(body: JsonObject, context: SendContext): SendResult {
  const parsed = smsRequest.safeParse(body);
  if (!parsed.success) return invalid(context, parsed.error, body);
  const request = parsed.data;
  const outcome = outcomeFor('sms', request.to);
  const base = {
    to: request.to,
    externalId: request.externalId,
    code: firstCode(request.text),
    text: request.text,
    outcome: outcome.name,
  };

  const refusal = refusalFor(outcome, `sms:${request.externalId ?? request.to}`, context);
  if (refusal !== undefined) return refused(refusalReply(context.requestId, refusal), request.to, outcome.name, base);

  const id = newMessageId();
  const createTime = context.now.toISOString();
  const sms: JsonObject = {
    id,
    to: request.to,
    text: request.text,
    senderId: request.senderId,
    regionCode: regionOf(request.to),
    totalSegments: smsSegments(request.text),
    totalPrice: 0.04,
    currency: 'USD',
    status: 'accepted',
    createTime,
    updateTime: createTime,
    externalId: request.externalId,
    bizType: 'sms',
  };
  const plan: ReceiptPlan = {
    steps: outcome.receipts,
    eventFor(step, at) {
      // The listed record follows the receipts, as YCloud's does.
      Object.assign(sms, { status: smsStatus(step.status), updateTime: at.toISOString(), errorCode: step.error?.code });
      return event('sms.message.updated', at, { sms: { ...sms } });
    },
  };
  return { reply: { status: 200, body: { ...sms } }, record: { ...base, id }, plans: [plan], listed: sms };
}

function handleEmail(body: JsonObject, context: SendContext): SendResult {
  const parsed = emailRequest.safeParse(body);
  if (!parsed.success) return invalid(context, parsed.error, body);
  const request = parsed.data;
  const from = parseMailbox(request.from);
  if (from === null) return invalidParam(context, 'from', 'from must be an email address', '');
  const recipients = request.to.split(',').map((part) => parseMailbox(part));
  const to = recipients.filter((mailbox): mailbox is Mailbox => mailbox !== null);
  if (to.length !== recipients.length || to.length === 0) {
    return invalidParam(context, 'to', 'to must be a comma-separated list of email addresses', request.to);
  }
  if (to.length > 100) return invalidParam(context, 'to', 'to accepts at most 100 addresses', request.to);

  const addresses = to.map((mailbox) => mailbox.address).join(',');
  const outcomes = to.map((mailbox) => outcomeFor('email', mailbox.address));
  const id = newMessageId();
  const email: JsonObject = {
    id,
    from,
    to,
    subject: request.subject,
    contentType: request.contentType,
    externalId: request.externalId,
    createTime: context.now.toISOString(),
    totalRecipients: to.length,
    totalPrice: 0.0008 * to.length,
    currency: 'USD',
  };
  const plans = to.map((mailbox, index): ReceiptPlan => ({
    steps: outcomes[index]?.receipts ?? [],
    eventFor(step, at) {
      return event('email.delivery.updated', at, {
        emailDelivery: {
          emailId: id,
          recipientAddress: mailbox.address,
          status: emailStatus(step.status),
          errorCode: step.error?.code,
          errorMessage: step.error?.message,
          externalId: request.externalId,
          bizType: 'email',
        },
      });
    },
  }));
  return {
    reply: { status: 200, body: email },
    record: {
      id,
      to: addresses,
      externalId: request.externalId,
      code: firstCode(`${request.subject}\n${visibleText(request.content, request.contentType)}`),
      text: request.subject,
      // A multi-recipient call is recorded once; the first recipient names its outcome.
      outcome: outcomes[0]?.name ?? 'delivered',
    },
    plans,
  };
}

function refusalFor(outcome: Outcome, key: string, context: SendContext): Refusal | undefined {
  if (outcome.refusal === undefined) return undefined;
  if (outcome.refuseFirstCalls === undefined) return outcome.refusal;
  return context.countCall(key) <= outcome.refuseFirstCalls ? outcome.refusal : undefined;
}

function refusalReply(requestId: string, refusal: Refusal): Reply {
  return errorReply(
    requestId,
    refusal.httpStatus,
    refusal.code,
    refusal.message,
    refusal.whatsappApiError === undefined
      ? {}
      : { target: 'whatsappApiError', whatsappApiError: refusal.whatsappApiError },
    refusal.retryAfterSeconds === undefined ? undefined : { 'retry-after': String(refusal.retryAfterSeconds) },
  );
}

function refused(
  reply: Reply,
  to: string,
  outcome: string,
  extra: Partial<SendResult['record']> = {},
): SendResult {
  return { reply, record: { ...extra, id: '', to, outcome }, plans: [] };
}

function invalid(context: SendContext, error: z.ZodError, body: JsonObject): SendResult {
  const issue = error.issues[0];
  const path = issue?.path ?? [];
  const target = path.map(String).join('.');
  const missing = valueAt(body, path) === undefined;
  const message = target === '' ? (issue?.message ?? 'invalid request') : `${target} ${missing ? 'is required' : issue?.message}`;
  return invalidParam(context, target, message, bestEffortTo(body));
}

function invalidParam(context: SendContext, target: string, message: string, to: string): SendResult {
  return refused(paramInvalid(context.requestId, message, target), to, 'invalid_request');
}

function paramInvalid(requestId: string, message: string, target: string): Reply {
  return errorReply(requestId, 400, 'PARAM_INVALID', message, { target });
}

function unauthorized(requestId: string): Reply {
  return errorReply(requestId, 401, 'UNAUTHORIZED', 'Missing or invalid API key in the X-API-Key header.');
}

/** YCloud `ErrorResponse`, with the request id mirrored in the body as YCloud does. */
function errorReply(
  requestId: string,
  status: number,
  code: string,
  message: string,
  extra: { target?: string; whatsappApiError?: Refusal['whatsappApiError'] } = {},
  headers?: Record<string, string>,
): Reply {
  return {
    status,
    body: { error: { status, code, message, ...extra, requestId } },
    headers: { 'ycloud-request-id': requestId, ...headers },
  };
}

function event(type: EventType, at: Date, payload: Omit<YCloudEvent, 'id' | 'type' | 'apiVersion' | 'createTime'>): YCloudEvent {
  return { id: `evt_${randomBytes(12).toString('base64url')}`, type, apiVersion: 'v2', createTime: at.toISOString(), ...payload };
}

/** YCloud ids look like 24-hex object ids; callers must treat them as opaque anyway. */
function newMessageId(): string {
  return randomBytes(12).toString('hex');
}

// SMS and email have no `read`; the magic table never asks for it there, but map defensively.
function smsStatus(status: SimulatedStatus): string {
  return status === 'read' ? 'delivered' : status;
}

function emailStatus(status: SimulatedStatus): string {
  return status === 'read' ? 'delivered' : status;
}

interface Mailbox {
  address: string;
  name?: string;
}

const EMAIL_ADDRESS = /^[^\s@<>,]+@[^\s@<>,]+\.[^\s@<>,]+$/;

/** Parses `addr@example.com` or `Name<addr@example.com>` (YCloud's format); addresses lower-cased. */
function parseMailbox(value: string): Mailbox | null {
  const trimmed = value.trim();
  const angled = /^(.*)<([^<>]+)>$/.exec(trimmed);
  const address = (angled?.[2] ?? trimmed).trim().toLowerCase();
  if (!EMAIL_ADDRESS.test(address)) return null;
  const name = angled?.[1]?.trim();
  return name === undefined || name === '' ? { address } : { address, name };
}

/** First run of 4–10 digits: how a human (or a test) spots the OTP in free text. */
function firstCode(value: string): string | undefined {
  return /(?<!\d)\d{4,10}(?!\d)/.exec(value)?.[0];
}

/** Strips markup so colour codes or widths in HTML are not mistaken for the code. */
function visibleText(content: string, contentType: string | undefined): string {
  if (contentType === 'text/plain') return content;
  return content
    .replace(/<(style|script|head)\b[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&#?\w+;/g, ' ');
}

const GSM7 = /^[A-Za-z0-9 \r\n@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!"#¤%&'()*+,\-./:;<=>?¡ÄÖÑÜ§¿äöñüà^{}\\[~\]|€]*$/;

/** Approximate segment count (GSM-7 160/153, else UCS-2 70/67; GSM extension chars counted once). */
function smsSegments(value: string): number {
  const gsm = GSM7.test(value);
  const length = value.length;
  const single = gsm ? 160 : 70;
  const multi = gsm ? 153 : 67;
  return length <= single ? 1 : Math.ceil(length / multi);
}

function regionOf(e164: string): string | undefined {
  return parsePhoneNumberFromString(e164)?.country;
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------------

async function readBody(req: IncomingMessage): Promise<Buffer | 'too_large'> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    // Keep draining past the limit so the client still gets an answer instead of a reset.
    if (size <= MAX_BODY_BYTES) chunks.push(buffer);
  }
  return size > MAX_BODY_BYTES ? 'too_large' : Buffer.concat(chunks);
}

function parseJson(raw: Buffer): JsonObject | undefined {
  try {
    const value: unknown = JSON.parse(raw.toString('utf8'));
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = root;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function bestEffortTo(body: JsonObject | undefined): string {
  const to = body?.['to'];
  return typeof to === 'string' ? to : '';
}

function filterTo(log: readonly SimulatedMessage[], to: string): SimulatedMessage[] {
  if (!to.includes('@')) return log.filter((m) => m.to === to);
  const wanted = to.trim().toLowerCase();
  return log.filter((m) => m.to.split(',').includes(wanted));
}

async function respond(res: ServerResponse, reply: Reply): Promise<void> {
  const body = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...reply.headers,
  });
  // 'close' as well as 'finish': a caller that hangs up must not leave us waiting forever.
  await new Promise<void>((resolve) => {
    res.once('close', resolve);
    res.end(body, resolve);
  });
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // fetch hides the useful part (ECONNREFUSED…) in `cause`.
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}
