import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signatures of tenant callbacks: header `Kurir-Signature: t=<unix seconds>,s=<hex>`, where `s`
 * is HMAC-SHA256(tenant API key, `<t>.<raw body>`) in lower-case hex — the scheme YCloud uses for
 * its webhooks, so a tenant's receiver verifies it the same way. The key is the tenant's own API
 * key (the tenant already holds it; no second secret to distribute). `t` is the time of the
 * attempt, not of the event, so every retry carries a fresh timestamp.
 */
export const CALLBACK_SIGNATURE_HEADER = 'Kurir-Signature';
export const CALLBACK_EVENT_ID_HEADER = 'Kurir-Event-Id';
export const CALLBACK_USER_AGENT = 'Kurir-Callbacks/1';
/** How far from the receiver's clock a timestamp may be; what receivers are told to accept. */
export const CALLBACK_TOLERANCE_SECONDS = 300;

export function signCallback(apiKey: string, timestampSeconds: number, rawBody: string | Buffer): string {
  return createHmac('sha256', apiKey).update(`${timestampSeconds}.`).update(rawBody).digest('hex');
}

/** The `Kurir-Signature` header value for one attempt. */
export function callbackSignatureHeader(apiKey: string, timestampSeconds: number, rawBody: string | Buffer): string {
  return `t=${timestampSeconds},s=${signCallback(apiKey, timestampSeconds, rawBody)}`;
}

export type CallbackSignatureCheck = { ok: true; timestamp: number } | { ok: false; reason: 'missing' | 'malformed' | 'stale' | 'mismatch' };

/**
 * What a receiver does (a reference implementation, used by the tests): parse `t` and `s`, refuse a
 * timestamp outside the tolerance, recompute the HMAC over the raw bytes and compare in constant time.
 */
export function verifyCallbackSignature(input: {
  header: string | undefined;
  rawBody: string | Buffer;
  apiKey: string;
  nowSeconds: number;
  toleranceSeconds?: number;
}): CallbackSignatureCheck {
  if (input.header === undefined || input.header === '') return { ok: false, reason: 'missing' };
  const match = /^t=(\d{1,12}),s=([0-9a-f]{64})$/.exec(input.header.trim());
  if (match === null || match[1] === undefined || match[2] === undefined) return { ok: false, reason: 'malformed' };
  const timestamp = Number(match[1]);
  if (Math.abs(input.nowSeconds - timestamp) > (input.toleranceSeconds ?? CALLBACK_TOLERANCE_SECONDS)) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(signCallback(input.apiKey, timestamp, input.rawBody), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(match[2], 'hex'))) return { ok: false, reason: 'mismatch' };
  return { ok: true, timestamp };
}
