import type { Job } from 'bullmq';
import { applyReceipt, type ReceiptDeps, type ReceiptOutcome } from '../common/delivery/receipt.js';
import { receiptJobSchema } from '../common/jobs/catalogue.js';

export type { ReceiptDeps, ReceiptOutcome };

/**
 * A receipt job queued by an earlier version, whose webhook queued receipts instead of applying
 * them (see QUEUES.receipts): applied exactly as the webhook applies one now. A Redis failure
 * throws, and BullMQ's retry finishes the follow-up work (every step is idempotent).
 */
export async function handleReceipt(job: Job, deps: ReceiptDeps): Promise<ReceiptOutcome> {
  const outcome = await applyReceipt(receiptJobSchema.parse(job.data), deps);
  if (outcome.outcome === 'skipped' && outcome.reason !== 'not_newer') {
    deps.metrics.jobsSkipped.inc({ queue: job.queueName, reason: outcome.reason });
  }
  return outcome;
}
