import { z } from 'zod';

import type { Channel } from '../../domain/channel.js';
import { HttpAbortedError, HttpTimeoutError } from '../../http/keep-alive-transport.js';
import { ProviderError, type ProviderErrorKind } from '../provider.js';

/**
 * How a failed YCloud call becomes a {@link ProviderError}. Pure functions only, so the whole
 * decision table can be tested row by row without a server.
 *
 * Glossary:
 * - YCloud code: `error.code` of the YCloud envelope (`PARAM_INVALID`, `SENDER_RATE_LIMITED`…).
 * - Meta code: `error.whatsappApiError.code`, the WhatsApp Cloud API error YCloud relays from a
 *   `sendDirectly` call (`"131026"`…). For WhatsApp it is the more precise diagnosis, so it wins.
 *
 * Error messages carry status, codes and the YCloud request id only. The vendor's free-text
 * message is left out on purpose: it can quote the parameters we sent, and those contain the OTP.
 */

/** The parts of the YCloud error envelope we act on; every field may be absent. */
export interface YCloudErrorBody {
  status?: number | undefined;
  code?: string | undefined;
  requestId?: string | undefined;
  /** `error.whatsappApiError.code`, always as a string (Meta sends numbers, the spec says string). */
  whatsappApiErrorCode?: string | undefined;
}

/** Meta and YCloud disagree on number vs string for codes; we compare them as strings. */
const codeValue = z.union([z.string(), z.number()]).transform(String);

const errorEnvelopeSchema = z.object({
  error: z.object({
    status: z.number().optional().catch(undefined),
    code: codeValue.optional().catch(undefined),
    requestId: z.string().optional().catch(undefined),
    whatsappApiError: z
      .object({ code: codeValue.optional().catch(undefined) })
      .optional()
      .catch(undefined),
  }),
});

/**
 * Reads the YCloud error envelope out of a response body. Returns `undefined` for anything that
 * is not the envelope (an HTML page from a proxy, an empty body, truncated JSON).
 */
export function parseErrorBody(text: string): YCloudErrorBody | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = errorEnvelopeSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const { error } = parsed.data;
  return {
    status: error.status,
    code: error.code,
    requestId: error.requestId,
    whatsappApiErrorCode: error.whatsappApiError?.code,
  };
}

/**
 * `Retry-After` as whole seconds from `nowMs`: either delta-seconds or an HTTP date
 * (RFC 9110 §10.2.3). A date in the past means "now" (0); garbage means "not said".
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  // All three HTTP-date forms spell out day and month names; without that check Date.parse
  // would read "-5" or "2026" as dates.
  if (!/[A-Za-z]{3}/.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/** What one Meta code means for this delivery. */
export interface MetaErrorClass {
  kind: ProviderErrorKind;
  notOnWhatsApp: boolean;
}

const permanent: MetaErrorClass = { kind: 'permanent', notOnWhatsApp: false };
const rateLimited: MetaErrorClass = { kind: 'rate_limited', notOnWhatsApp: false };
const undeliverable: MetaErrorClass = { kind: 'permanent', notOnWhatsApp: true };

/**
 * Meta Cloud API codes we know (see `shared/reference/providers.md` §7.3). Anything not listed is
 * treated as permanent: an unknown Meta error is most likely about this request or account, and
 * retrying WhatsApp only delays the code while SMS is available right now.
 */
export const META_ERROR_CLASSES: Readonly<Record<string, MetaErrorClass>> = {
  // Not a WhatsApp user / cannot receive: the same number will fail again, cache it.
  '131026': undeliverable,
  // "User in experiment": not meant for auth templates, but when it does happen the
  // recipient cannot get this message either, so it is handled like 131026.
  '130472': undeliverable,

  // Throughput, pair-rate, WABA API rate and spam-rate limits: Meta throttled us.
  '130429': rateLimited,
  '131056': rateLimited,
  '80007': rateLimited,
  '131048': rateLimited,

  // Generic failure, account maintenance, ecosystem "chose not to deliver". Some are transient in
  // Meta's sense, but an OTP is only useful for a minute or two: retrying WhatsApp with backoff
  // would spend that time, so we end this delivery and let the orchestrator fall back to SMS now.
  '131000': permanent,
  '131057': permanent,
  '131049': permanent,

  // Template, parameter, account and permission problems: a request or configuration bug that no
  // retry fixes (alerting is the orchestrator's job).
  '131009': permanent,
  '100': permanent,
  '132000': permanent,
  '132001': permanent,
  '132012': permanent,
  '132015': permanent,
  '132016': permanent,
  '131031': permanent,
  '368': permanent,
  '131042': permanent,
  '190': permanent,
  '10': permanent,
  '200': permanent,
  '3': permanent,
};

/** Looks a Meta code up in {@link META_ERROR_CLASSES}; unknown codes are permanent. */
export function classifyMetaCode(code: string): MetaErrorClass {
  return Object.hasOwn(META_ERROR_CLASSES, code) ? (META_ERROR_CLASSES[code] ?? permanent) : permanent;
}

/**
 * Codes end up in metric labels and job outcomes, so only short identifier-like vendor codes are
 * passed through; anything else is replaced by the caller's fallback.
 */
const SAFE_VENDOR_CODE = /^[A-Za-z0-9_.-]{1,64}$/;
const SAFE_META_CODE = /^\d{1,10}$/;

function safeCode(code: string | undefined): string | undefined {
  return code !== undefined && SAFE_VENDOR_CODE.test(code) ? code : undefined;
}

/** Input of {@link classifyHttpError}: one non-2xx YCloud response, already read. */
export interface HttpFailure {
  channel: Channel;
  httpStatus: number;
  /** The raw response body; parsed defensively, never copied into the error. */
  bodyText: string;
  retryAfterHeader?: string | null | undefined;
  /** `YCloud-Request-ID` header, used when the body does not carry `error.requestId`. */
  requestIdHeader?: string | null | undefined;
  /** Clock for HTTP-date `Retry-After` values. */
  nowMs: number;
}

/**
 * Classifies a non-2xx YCloud response:
 * - WhatsApp with a Meta code → {@link META_ERROR_CLASSES}, code `whatsapp_<meta code>`;
 * - 429 → `rate_limited`, with `Retry-After`;
 * - 5xx and 408 → `transient`;
 * - any other status → `permanent` (bad parameters, balance, block list, credentials…).
 *
 * The code is the YCloud `error.code` when there is one, else `http_<status>`.
 */
export function classifyHttpError(failure: HttpFailure): ProviderError {
  const { channel, httpStatus } = failure;
  const body = parseErrorBody(failure.bodyText);
  const vendorCode = safeCode(body?.code);
  const requestId = safeCode(body?.requestId) ?? safeCode(failure.requestIdHeader ?? undefined);
  const retryAfterSeconds = parseRetryAfter(failure.retryAfterHeader, failure.nowMs);

  const suffix = requestId === undefined ? '' : ` (request ${requestId})`;
  const describe = (code: string): string => `YCloud ${channel} send failed: HTTP ${httpStatus} ${code}${suffix}`;

  const metaCode = body?.whatsappApiErrorCode;
  if (channel === 'whatsapp' && metaCode !== undefined) {
    const known = SAFE_META_CODE.test(metaCode);
    const meta = known ? classifyMetaCode(metaCode) : permanent;
    const code = known ? `whatsapp_${metaCode}` : 'whatsapp_unknown';
    return new ProviderError(describe(code), {
      code,
      kind: meta.kind,
      httpStatus,
      retryAfterSeconds: meta.kind === 'rate_limited' ? retryAfterSeconds : undefined,
      notOnWhatsApp: meta.notOnWhatsApp,
    });
  }

  const code = vendorCode ?? `http_${httpStatus}`;
  if (httpStatus === 429) {
    return new ProviderError(describe(code), { code, kind: 'rate_limited', httpStatus, retryAfterSeconds });
  }
  // 408 is the server giving up on reading our request: nothing wrong with the request itself.
  if (httpStatus >= 500 || httpStatus === 408) {
    return new ProviderError(describe(code), { code, kind: 'transient', httpStatus, retryAfterSeconds });
  }
  return new ProviderError(describe(code), { code, kind: 'permanent', httpStatus });
}

/**
 * Classifies an HTTP exchange that threw (no HTTP response, or the body could not be read): the
 * caller stopped it (`aborted`, e.g. a worker shutting down), our own deadline did (`timeout`), or
 * the network (`network`: refused, reset, DNS, TLS). All are transient: the vendor never answered,
 * so nothing says the request was wrong. Only a failure of the connect phase proves the vendor
 * never got the request; anything later leaves the outcome unknown.
 */
export function classifyTransportFailure(channel: Channel, error: unknown): ProviderError {
  const code = error instanceof HttpAbortedError ? 'aborted' : error instanceof HttpTimeoutError ? 'timeout' : 'network';
  const reason =
    code === 'aborted' ? 'aborted by caller' : code === 'timeout' ? 'timed out' : 'network error';
  return new ProviderError(`YCloud ${channel} send failed: ${reason}`, {
    code,
    kind: 'transient',
    outcomeUnknown: error instanceof HttpAbortedError ? error.requestStarted : code === 'timeout' || !failedBeforeSending(error),
    cause: error,
  });
}

/** Errors of the connect phase: the request never left, so YCloud cannot have the message. */
const CONNECT_PHASE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** Walks `fetch`'s `cause` chain (undici wraps the socket error) for a connect-phase code. */
function failedBeforeSending(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_PHASE_CODES.has(code)) return true;
  }
  return false;
}

/**
 * A 2xx whose body we cannot use (not JSON, no `id`). Transient: such a body is typically a
 * truncated response or a proxy/captive page in front of YCloud, both passing conditions. The
 * risk of a retry is a duplicate OTP message if YCloud did accept it, which is harmless next to
 * not delivering the code; and without an id we could not correlate receipts for this send anyway.
 */
export function invalidSuccessResponse(channel: Channel, httpStatus: number): ProviderError {
  return new ProviderError(`YCloud ${channel} send returned HTTP ${httpStatus} without a message id`, {
    code: 'invalid_response',
    kind: 'transient',
    httpStatus,
    // A 2xx came back: YCloud most likely took the message.
    outcomeUnknown: true,
  });
}

/**
 * A 2xx whose message already says `failed` (YCloud skipped or Meta refused it synchronously).
 * Classified like an error response so the orchestrator falls back now instead of waiting for
 * the receipt.
 */
export function failedOnSubmit(
  channel: Channel,
  httpStatus: number,
  codes: { errorCode?: string | undefined; whatsappApiErrorCode?: string | undefined },
): ProviderError {
  const metaCode = codes.whatsappApiErrorCode ?? (channel === 'whatsapp' ? codes.errorCode : undefined);
  if (metaCode !== undefined && SAFE_META_CODE.test(metaCode)) {
    const meta = classifyMetaCode(metaCode);
    const code = `whatsapp_${metaCode}`;
    return new ProviderError(`YCloud ${channel} message failed on submit: ${code}`, {
      code,
      kind: meta.kind,
      httpStatus,
      notOnWhatsApp: meta.notOnWhatsApp,
    });
  }
  const code = safeCode(codes.errorCode) ?? 'failed_on_submit';
  return new ProviderError(`YCloud ${channel} message failed on submit: ${code}`, {
    code,
    kind: 'permanent',
    httpStatus,
  });
}
