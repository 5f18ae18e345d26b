import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deliveryDeadlines, nextWake } from '../../common/delivery/deadlines.js';
import type { Delivery } from '../../common/domain/verification.js';

const T0 = 1_700_000_000_000;
const EXPIRES = T0 + 600_000;

function delivery(n: number, fields: Partial<Delivery>): Delivery {
  return {
    n,
    channel: 'whatsapp',
    reason: 'initial',
    status: 'sent',
    provider: 'ycloud',
    providerMessageId: `wamid.${n}`,
    errorCode: undefined,
    queuedAt: T0,
    sentAt: T0 + 100,
    deliveredAt: undefined,
    failedAt: undefined,
    fellBackTo: undefined,
    deliveredAfterFallback: false,
    ...fields,
  };
}

function verification(deliveries: Delivery[], plan: Delivery['channel'][] = ['whatsapp', 'sms']) {
  return { plan, deliveries, deliveryTimeoutSeconds: 30, expiresAt: EXPIRES };
}

describe('delivery deadlines (the verification timer)', () => {
  test('a delivery the provider took and nothing settled waits until sentAt + the timeout', () => {
    assert.deepEqual(deliveryDeadlines(verification([delivery(1, { status: 'accepted' })])), [{ n: 1, at: T0 + 30_100 }]);
    assert.deepEqual(deliveryDeadlines(verification([delivery(1, { status: 'sent' })])), [{ n: 1, at: T0 + 30_100 }]);
  });

  test('no deadline once settled, before the provider took it, or with no channel to fall back to', () => {
    for (const status of ['delivered', 'read', 'failed', 'queued', 'sending', 'retrying'] as const) {
      assert.deepEqual(deliveryDeadlines(verification([delivery(1, { status })])), [], status);
    }
    assert.deepEqual(deliveryDeadlines(verification([delivery(1, { sentAt: undefined })])), [], 'no sentAt');
    assert.deepEqual(deliveryDeadlines(verification([delivery(1, { fellBackTo: 2 }), delivery(2, { channel: 'sms', status: 'queued', sentAt: undefined })])), []);
    assert.deepEqual(deliveryDeadlines(verification([delivery(1, { channel: 'sms' })], ['sms'])), [], 'an SMS-only plan arms no timer');
  });

  test('the timer wakes at the earliest deadline ahead, else at the expiry', () => {
    const waiting = verification([delivery(1, { fellBackTo: 2 }), delivery(2, { channel: 'sms', sentAt: T0 + 40_000 })], ['whatsapp', 'sms', 'whatsapp']);
    assert.equal(nextWake(waiting, T0 + 41_000), T0 + 70_000);
    assert.equal(nextWake(waiting, T0 + 70_000), EXPIRES, 'a deadline that is due now is not ahead');
    assert.equal(nextWake(verification([delivery(1, { status: 'delivered' })]), T0 + 1_000), EXPIRES);
    const late = verification([delivery(1, { sentAt: EXPIRES })]);
    assert.equal(nextWake(late, T0), EXPIRES, 'never past the expiry');
  });
});
