import type { ErrorRequestHandler } from 'express';
import type { Logger } from 'pino';
import { ERROR_CODES, KurirError, type ErrorCode } from '../common/errors.js';

/** RFC 9457 problem document, with our stable `code` as an extension member. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  [extension: string]: unknown;
}

const TITLES: Record<ErrorCode, string> = {
  validation_failed: 'Request validation failed',
  invalid_json: 'Body is not valid JSON',
  invalid_destination: 'Destination is not a valid phone number or email address',
  unknown_purpose: 'Unknown purpose',
  channel_not_allowed: 'Channel not allowed for this destination',
  invalid_idempotency_key: 'Invalid Idempotency-Key header',
  unauthorized: 'Missing or invalid API key',
  invalid_signature: 'Webhook signature check failed',
  destination_not_allowed: 'Destination not allowed',
  not_found: 'Not found',
  verification_not_pending: 'Verification is no longer pending',
  payload_too_large: 'Request body too large',
  unsupported_media_type: 'Content-Type must be application/json',
  idempotency_key_reused: 'Idempotency-Key reused with a different request',
  resend_cooldown: 'Resend requested too soon',
  max_sends_reached: 'No more sends allowed for this verification',
  rate_limited: 'Too many codes requested',
  destination_locked: 'Too many wrong codes for this destination',
  budget_exhausted: 'Daily message budget exhausted',
  internal_error: 'Internal error',
  service_unavailable: 'Service temporarily unavailable',
};

export function problemFor(error: KurirError): Problem {
  return {
    type: `urn:kurir:problem:${error.code}`,
    title: TITLES[error.code],
    status: error.status,
    detail: error.message,
    code: error.code,
    ...error.details,
  };
}

interface BodyParserError {
  type?: unknown;
  status?: unknown;
  name?: unknown;
}

/** Maps body-parser's own failures onto our codes (they are thrown before any route runs). */
function fromBodyParser(error: BodyParserError): KurirError | undefined {
  switch (error.type) {
    case 'entity.parse.failed':
      return new KurirError('invalid_json', 'The request body could not be parsed as JSON.');
    case 'entity.too.large':
      return new KurirError('payload_too_large', 'The request body exceeds the size limit.');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new KurirError('unsupported_media_type', 'Unsupported body encoding or charset.');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new KurirError('validation_failed', 'The request body could not be read.');
    default:
      break;
  }
  // Express's own 4xx errors without a body-parser type: an undecodable path parameter (a bad
  // percent-escape) names no verification; a body that fails to decompress is a bad request.
  if (error.name === 'URIError' && error.status === 400) return new KurirError('not_found', 'No such endpoint.');
  if (typeof error.status === 'number' && error.status >= 400 && error.status < 500) {
    if (error.status === 413) return new KurirError('payload_too_large', 'The request body exceeds the size limit.');
    if (error.status === 415) return new KurirError('unsupported_media_type', 'Unsupported body encoding or charset.');
    return new KurirError('validation_failed', 'The request could not be read.');
  }
  return undefined;
}

function isRedisUnavailable(error: unknown): boolean {
  const message = error instanceof Error ? error.message : '';
  return /Connection is closed|enableOfflineQueue|ECONNREFUSED|Stream isn't writeable|max retries|ETIMEDOUT|MaxRetriesPerRequest|Command timed out|CLUSTERDOWN|LOADING|Too many Cluster redirections|None of startup nodes is available|Failed to refresh slots cache|TRYAGAIN/i.test(message);
}

export function sendProblem(res: import('express').Response, error: KurirError): void {
  const retryAfter = error.details.retryAfterSeconds;
  if (typeof retryAfter === 'number') res.setHeader('Retry-After', String(retryAfter));
  res.status(error.status).type('application/problem+json').send(JSON.stringify(problemFor(error)));
}

/** The one place errors become HTTP answers. Unknown errors are logged and answered 500 without detail. */
export function problemMiddleware(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    let known: KurirError | undefined;
    if (error instanceof KurirError) known = error;
    else if (typeof error === 'object' && error !== null) known = fromBodyParser(error as BodyParserError);
    if (known === undefined && isRedisUnavailable(error)) {
      known = new KurirError('service_unavailable', 'The data store is unreachable; try again shortly.', { retryAfterSeconds: 1 });
    }
    if (known === undefined) {
      logger.error({ err: error, method: req.method, path: req.route?.path ?? 'unmatched' }, 'unhandled error');
      known = new KurirError('internal_error', 'An unexpected error occurred.');
    } else if (known.status >= 500) {
      logger.warn({ code: known.code, path: req.route?.path ?? 'unmatched' }, known.message);
    }
    if (res.headersSent) return;
    sendProblem(res, known);
  };
}

export { ERROR_CODES };
