import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { KurirError } from '../common/errors.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { eventTypeLabel, type Metrics } from '../common/observability/metrics.js';
import type { MessagingProvider } from '../common/providers/provider.js';
import { verifySignature } from '../common/providers/ycloud/ycloud-signature.js';
import type { KeySpace } from '../common/store/keys.js';
import type { RedisClient } from '../common/store/verification.store.js';
import { webhookEnvelopeSchema } from './schemas.js';
import type { Reply } from './verifications.handlers.js';

export interface WebhookDeps {
  provider: MessagingProvider;
  webhookSecret: string;
  queues: JobQueues;
  redis: RedisClient;
  keys: KeySpace;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
}

/**
 * How long an accepted event id is remembered. YCloud's retries end about 6 hours after the
 * first attempt (10 s, 30 s, 5 min, 30 min, 1 h, 2 h, 2 h); a day covers that with margin at a
 * fraction of the memory a longer window costs (~150 B per event).
 */
const EVENT_DEDUPE_SECONDS = 24 * 3600;

/**
 * YCloud webhook receiver: signature over the raw bytes first (nothing is parsed or stored for
 * an unsigned request), then dedupe by event id, then a receipt job. It answers 2xx only once
 * the event is recorded; if Redis is down it answers 503 so YCloud retries later. The queued job
 * holds the normalised receipt only: the raw event can carry the message text, i.e. the code.
 */
export async function receiveYCloudWebhook(
  input: { rawBody: Buffer; signatureHeader: string | undefined },
  deps: WebhookDeps,
): Promise<Reply> {
  const check = verifySignature({
    header: input.signatureHeader,
    rawBody: input.rawBody,
    secret: deps.webhookSecret,
    nowSeconds: Math.floor(deps.now() / 1000),
  });
  if (!check.ok) {
    deps.metrics.webhookEvents.inc({ type: 'unverified', result: `signature_${check.reason}` });
    deps.logger.warn({ reason: check.reason }, 'webhook signature refused');
    throw new KurirError('invalid_signature', `Signature check failed (${check.reason}).`, { reason: check.reason });
  }

  let event: unknown;
  try {
    event = JSON.parse(input.rawBody.toString('utf8'));
  } catch {
    deps.metrics.webhookEvents.inc({ type: 'unparsed', result: 'invalid_json' });
    throw new KurirError('invalid_json', 'The webhook body is not JSON.');
  }
  const envelope = webhookEnvelopeSchema.safeParse(event);
  if (!envelope.success) {
    deps.metrics.webhookEvents.inc({ type: 'unparsed', result: 'invalid_event' });
    throw new KurirError('validation_failed', 'The webhook body is not a YCloud event.');
  }
  const type = eventTypeLabel(envelope.data.type);
  const receipt = deps.provider.parseReceipt(event);
  if (receipt === null) {
    // Unknown or irrelevant types are acknowledged so YCloud does not retry them forever.
    deps.metrics.webhookEvents.inc({ type, result: 'ignored' });
    return { status: 200, body: { received: true, ignored: true } };
  }

  const digest = createHash('sha256').update(envelope.data.id).digest('hex').slice(0, 40);
  const dedupeKey = deps.keys.webhookEvent(digest);
  const first = await deps.redis.set(dedupeKey, '1', 'EX', EVENT_DEDUPE_SECONDS, 'NX');
  if (first === null) {
    deps.metrics.webhookEvents.inc({ type, result: 'duplicate' });
    return { status: 200, body: { received: true, duplicate: true } };
  }
  try {
    await deps.queues.enqueueReceipt(digest, {
      eventId: envelope.data.id,
      eventType: envelope.data.type,
      provider: deps.provider.name,
      channel: receipt.channel,
      providerMessageId: receipt.providerMessageId,
      ...(receipt.externalId === undefined ? {} : { externalId: receipt.externalId }),
      status: receipt.status,
      ...(receipt.errorCode === undefined ? {} : { errorCode: receipt.errorCode }),
      occurredAt: Math.max(0, Math.round(receipt.occurredAt)),
      receivedAt: deps.now(),
    });
  } catch (error) {
    // Forget the id again so the provider's retry is not taken for a duplicate of a lost event.
    await deps.redis.del(dedupeKey).catch(() => undefined);
    deps.metrics.webhookEvents.inc({ type, result: 'unavailable' });
    throw new KurirError('service_unavailable', 'Could not record the event; retry later.', { retryAfterSeconds: 10 }, { cause: error });
  }
  deps.metrics.webhookEvents.inc({ type, result: 'accepted' });
  return { status: 200, body: { received: true } };
}
