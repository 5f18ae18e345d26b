import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DelayedError, type Job } from 'bullmq';
import { pino } from 'pino';
import type { Delivery } from '../../common/domain/verification.js';
import { handleVerificationExpiry, type VerificationExpiryDeps } from '../../scheduler/verification-expiry.handler.js';

const T0 = 1_700_000_000_000;
const EXPIRES = T0 + 600_000;

/** A pending WhatsApp → SMS verification whose first delivery, sent at T0, is confirmed delivered. */
function pendingVerification() {
  const delivered: Delivery = {
    n: 1, channel: 'whatsapp', reason: 'initial', status: 'delivered', provider: 'ycloud', providerMessageId: 'wamid.1', errorCode: undefined,
    queuedAt: T0, sentAt: T0, deliveredAt: T0 + 500, failedAt: undefined, fellBackTo: undefined, deliveredAfterFallback: false,
  };
  return { id: 'ver_0123456789abcdef01234567', tenant: 'acme', status: 'pending', plan: ['whatsapp', 'sms'], deliveries: [delivered], deliveryTimeoutSeconds: 30, expiresAt: EXPIRES };
}

/** The timer as its handler sees it: its data and where it was sent back to sleep. */
function timerJob(data: Record<string, unknown>) {
  const slept: number[] = [];
  const job = { data, queueName: 'verification-expiry', id: 'expire-x', moveToDelayed: async (at: number) => void slept.push(at) } as unknown as Job;
  return { job, slept };
}

function deps(now: number): VerificationExpiryDeps {
  return {
    store: { get: async () => pendingVerification(), expire: async () => assert.fail('not due: nothing may expire it') },
    queues: {},
    metrics: {},
    logger: pino({ level: 'silent' }),
    stats: {},
    now: () => now,
  } as unknown as VerificationExpiryDeps;
}

describe('the verification timer woken before the expiry', () => {
  test('goes back to sleep until the expiry when nothing is due', async () => {
    const { job, slept } = timerJob({ verificationId: 'ver_0123456789abcdef01234567', expiresAt: EXPIRES });
    await assert.rejects(handleVerificationExpiry(job, deps(T0 + 30_000), 'token'), DelayedError);
    assert.deepEqual(slept, [EXPIRES]);
  });

  test('without the expiry in its data (an earlier version queued it) the record tells it is early', async () => {
    const { job, slept } = timerJob({ verificationId: 'ver_0123456789abcdef01234567' });
    await assert.rejects(handleVerificationExpiry(job, deps(T0 + 30_000), 'token'), DelayedError);
    assert.deepEqual(slept, [EXPIRES]);
  });
});
