import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * YCloud webhook signatures: header `YCloud-Signature: t=<unix seconds>,s=<hex>`, where `s` is
 * HMAC-SHA256(secret, `${t}.${rawBody}`) in lower-case hex. The signed bytes are the raw body
 * exactly as received, so callers must hand us the bytes before any JSON parsing.
 */
export const SIGNATURE_HEADER = 'ycloud-signature';
export const DEFAULT_TOLERANCE_SECONDS = 300;

export type SignatureFailure = 'missing' | 'malformed' | 'stale' | 'mismatch';

export type SignatureCheck = { ok: true; timestamp: number } | { ok: false; reason: SignatureFailure };

export function signPayload(secret: string, timestampSeconds: number, rawBody: Buffer | string): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.`).update(rawBody).digest('hex');
}

/** Builds the header value a sender (our simulator, a test) puts on a webhook request. */
export function signatureHeader(secret: string, timestampSeconds: number, rawBody: Buffer | string): string {
  return `t=${timestampSeconds},s=${signPayload(secret, timestampSeconds, rawBody)}`;
}

const HEX_SHA256 = /^[0-9a-f]{64}$/;
const UNIX_SECONDS = /^\d{1,12}$/;

/** Parses `t=…,s=…`; tolerant of spaces and of extra unknown pairs, strict about the two we need. */
function parseHeader(header: string): { timestamp: number; signature: string } | null {
  let timestamp: string | undefined;
  let signature: string | undefined;
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return null;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') timestamp = value;
    else if (key === 's') signature = value.toLowerCase();
  }
  if (timestamp === undefined || signature === undefined) return null;
  if (!UNIX_SECONDS.test(timestamp) || !HEX_SHA256.test(signature)) return null;
  return { timestamp: Number(timestamp), signature };
}

export function verifySignature(input: {
  header: string | undefined;
  rawBody: Buffer;
  secret: string;
  nowSeconds: number;
  toleranceSeconds?: number;
}): SignatureCheck {
  if (input.header === undefined || input.header === '') return { ok: false, reason: 'missing' };
  const parsed = parseHeader(input.header);
  if (parsed === null) return { ok: false, reason: 'malformed' };
  const tolerance = input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  // Both directions: a timestamp far in the future is as suspicious as a replayed old one.
  if (Math.abs(input.nowSeconds - parsed.timestamp) > tolerance) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(signPayload(input.secret, parsed.timestamp, input.rawBody), 'hex');
  const given = Buffer.from(parsed.signature, 'hex');
  // Lengths are equal by construction (the header regex pins 64 hex chars), so timingSafeEqual cannot throw.
  if (!timingSafeEqual(expected, given)) return { ok: false, reason: 'mismatch' };
  return { ok: true, timestamp: parsed.timestamp };
}
