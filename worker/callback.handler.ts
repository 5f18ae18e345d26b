import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { Metrics } from '../common/observability/metrics.js';
import { callbackHost, checkCallbackUrl } from '../common/callbacks/callback-url.js';
import {
  CALLBACK_EVENT_ID_HEADER,
  CALLBACK_SIGNATURE_HEADER,
  CALLBACK_USER_AGENT,
  callbackSignatureHeader,
} from '../common/callbacks/callback-signature.js';
import type { Config } from '../common/config/env.js';
import { callbackJobSchema } from '../common/jobs/catalogue.js';

/** A tenant's endpoint gets this long to answer one attempt (headers; the body is not read). */
export const CALLBACK_TIMEOUT_MS = 5000;

export interface CallbackDeps {
  /** `apiKeys` signs (tenant → key; never logged); `production` re-applies the URL rules. */
  config: Pick<Config, 'apiKeys' | 'production'>;
  logger: Logger;
  metrics: Pick<Metrics, 'callbacks'>;
  now: () => number;
}

export type CallbackOutcome =
  | { outcome: 'delivered'; status: number }
  | { outcome: 'gone' }
  | { outcome: 'skipped'; reason: 'unknown_tenant' };

/** A failed attempt worth retrying (5xx, 408, 429, timeout, network); BullMQ backs off and retries. */
export class CallbackAttemptError extends Error {
  override readonly name = 'CallbackAttemptError';
  constructor(
    readonly reason: 'timeout' | 'network' | 'status',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What an answer means: done, stop, retry, or a permanent failure. */
export function classifyCallbackStatus(status: number): 'delivered' | 'gone' | 'retry' | 'permanent' {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 410) return 'gone';
  if (status === 408 || status === 429 || status >= 500) return 'retry';
  // 3xx included: redirects are never followed (they could point anywhere, internal hosts too).
  return 'permanent';
}

/**
 * Posts one callback event to the tenant: JSON body, signed with the tenant's API key over
 * `<t>.<raw body>`. 2xx is done; 410 means the endpoint is gone (stop, no retry); 408, 429, 5xx,
 * timeouts and network errors are retried with backoff (8 attempts); any other answer, redirects
 * included, is a permanent failure. Logs name the host only: a callback URL's path or query may
 * hold the tenant's own secrets.
 *
 * Metrics: there is no callback counter in the registry yet; the log line of every attempt carries
 * `result` with the values a `kurir_callbacks_total{type,result}` counter would use.
 */
export async function handleCallback(job: Job, deps: CallbackDeps): Promise<CallbackOutcome> {
  const { tenant, url, event } = callbackJobSchema.parse(job.data);
  const log = deps.logger.child({
    verificationId: event.verification.id,
    eventId: event.id,
    type: event.type,
    jobId: job.id,
    host: callbackHost(url),
    attempt: job.attemptsMade + 1,
  });
  const count = (result: string) => deps.metrics.callbacks.inc({ type: event.type, result });
  const apiKey = deps.config.apiKeys.get(tenant);
  if (apiKey === undefined) {
    // The tenant was removed from KURIR_API_KEYS since: there is no key to sign with.
    count('unknown_tenant');
    log.warn({ result: 'unknown_tenant' }, 'callback dropped: the tenant has no API key any more');
    return { outcome: 'skipped', reason: 'unknown_tenant' };
  }
  const checked = checkCallbackUrl(url, { production: deps.config.production });
  if (!checked.ok) {
    count('refused_url');
    log.error({ result: 'refused_url', problem: checked.problem }, 'callback URL refused');
    throw new UnrecoverableError(`callback URL refused: ${checked.problem}`);
  }

  const body = JSON.stringify(event);
  const timestamp = Math.floor(deps.now() / 1000);
  const started = performance.now();
  let response: Response;
  try {
    response = await fetch(checked.url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'User-Agent': CALLBACK_USER_AGENT,
        [CALLBACK_EVENT_ID_HEADER]: event.id,
        [CALLBACK_SIGNATURE_HEADER]: callbackSignatureHeader(apiKey, timestamp, body),
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(CALLBACK_TIMEOUT_MS),
    });
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
    const reason = timedOut ? 'timeout' : 'network';
    count(reason);
    log.warn({ result: reason, ms: Math.round(performance.now() - started) }, 'callback attempt failed');
    throw new CallbackAttemptError(reason, timedOut ? `no answer within ${CALLBACK_TIMEOUT_MS} ms` : 'could not connect', { cause: error });
  }
  // The answer's body is of no use to us; do not let a large one hold the connection.
  await response.body?.cancel().catch(() => undefined);
  const status = response.status;
  const ms = Math.round(performance.now() - started);
  switch (classifyCallbackStatus(status)) {
    case 'delivered':
      count('delivered');
      log.info({ result: 'delivered', status, ms }, 'callback delivered');
      return { outcome: 'delivered', status };
    case 'gone':
      count('gone');
      log.warn({ result: 'gone', status, ms }, 'callback endpoint answered 410 Gone: not retrying');
      return { outcome: 'gone' };
    case 'retry':
      count('retry');
      log.warn({ result: 'retry', status, ms }, 'callback attempt failed');
      throw new CallbackAttemptError('status', `endpoint answered ${status}`);
    case 'permanent':
      count('rejected');
      log.error({ result: 'rejected', status, ms }, 'callback refused by the endpoint: not retrying');
      throw new UnrecoverableError(`endpoint answered ${status}`);
  }
}
