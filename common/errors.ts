/**
 * Coded errors. Every error a client can see has a stable `code` from this closed list; the API
 * maps them to RFC 9457 problem documents in one place (api/problem.ts).
 */
export const ERROR_CODES = {
  validation_failed: 400,
  invalid_json: 400,
  invalid_destination: 400,
  unknown_purpose: 400,
  channel_not_allowed: 400,
  invalid_idempotency_key: 400,
  unauthorized: 401,
  invalid_signature: 401,
  destination_not_allowed: 403,
  not_found: 404,
  verification_not_pending: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_reused: 422,
  resend_cooldown: 429,
  max_sends_reached: 429,
  rate_limited: 429,
  destination_locked: 429,
  budget_exhausted: 429,
  internal_error: 500,
  service_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class KurirError extends Error {
  override readonly name = 'KurirError';
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra members of the problem document (e.g. `errors` for validation, `retryAfterSeconds`). */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = details;
  }

  get retryable(): boolean {
    return this.status === 429 || this.status >= 500;
  }
}
