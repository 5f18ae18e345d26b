import { KurirError } from '../common/errors.js';
import { applyReceipt, type ReceiptDeps, type ReceiptOutcome } from '../common/delivery/receipt.js';
import { eventTypeLabel } from '../common/observability/metrics.js';
import type { MessagingProvider } from '../common/providers/provider.js';
import { verifySignature } from '../common/providers/ycloud/ycloud-signature.js';
import { webhookEnvelopeSchema } from './schemas.js';
import type { Reply } from './verifications.handlers.js';

export interface WebhookDeps extends ReceiptDeps {
  provider: MessagingProvider;
  webhookSecret: string;
}

/** The answer and the metric's `result` label for each way a signed receipt can end. */
function acknowledge(outcome: ReceiptOutcome): { result: string; body: Reply['body'] } {
  if (outcome.outcome === 'applied') return { result: 'accepted', body: { received: true } };
  switch (outcome.reason) {
    case 'not_newer':
      return { result: 'duplicate', body: { received: true, duplicate: true } };
    case 'unknown_message':
    case 'missing_delivery':
      // Another sender's message on the same account, or a record whose retention ran out:
      // acknowledged, or YCloud would retry it for hours.
      return { result: outcome.reason, body: { received: true, ignored: true } };
  }
}

/**
 * YCloud webhook receiver: signature over the raw bytes first (nothing is parsed or stored for
 * an unsigned request), then the receipt is applied right here, follow-up work included (the
 * fallback's send job, callbacks). It answers 2xx only once that is done; if Redis fails on the
 * way it answers 503 and YCloud's retry of the event finishes the work, every step being
 * idempotent (common/delivery/receipt.ts) — which is also why repeats need no dedupe key.
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

  let outcome: ReceiptOutcome;
  try {
    outcome = await applyReceipt(
      { ...receipt, occurredAt: Math.max(0, Math.round(receipt.occurredAt)), eventId: envelope.data.id, provider: deps.provider.name },
      deps,
    );
  } catch (error) {
    deps.metrics.webhookEvents.inc({ type, result: 'unavailable' });
    deps.logger.warn({ eventId: envelope.data.id, err: { message: error instanceof Error ? error.message : String(error) } }, 'receipt not applied; the provider will retry');
    throw new KurirError('service_unavailable', 'Could not apply the event; retry later.', { retryAfterSeconds: 10 }, { cause: error });
  }
  const { result, body } = acknowledge(outcome);
  deps.metrics.webhookEvents.inc({ type, result });
  return { status: 200, body };
}
