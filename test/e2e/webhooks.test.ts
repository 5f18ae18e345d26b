import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { JobQueues } from '../../common/jobs/queues.js';
import { signatureHeader } from '../../common/providers/ycloud/ycloud-signature.js';
import { receiveYCloudWebhook } from '../../api/webhooks.handler.js';
import { magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';

/**
 * The webhook receiver against hand-made YCloud events. The delivery timeout is long here so
 * that only the events we post can change a delivery.
 */
let k: KurirHarness;
let secret: string;

before(async () => {
  k = await startKurir({ KURIR_DELIVERY_TIMEOUT_SECONDS: '30' });
  secret = k.kurir.services.config.provider.webhookSecret;
});
after(async () => {
  await k.close();
});

/** A verification whose WhatsApp message the simulator accepts but never reports delivered. */
async function sentOnlyVerification() {
  const to = magicNumber('1002');
  const created = await k.create({ to, purpose: 'login' });
  assert.equal(created.status, 202, created.text);
  const id = String(created.body.id);
  const message = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
  await k.waitFor(id, (v) => v.deliveries[0]?.status === 'sent');
  return { id, to, providerMessageId: message.id };
}

function whatsappEvent(target: { id: string; to: string; providerMessageId: string }, status: string, eventId = `evt_${randomUUID()}`) {
  return {
    id: eventId,
    type: 'whatsapp.message.updated',
    apiVersion: 'v2',
    createTime: new Date().toISOString(),
    whatsappMessage: {
      id: target.providerMessageId,
      wabaId: 'waba_1',
      from: '+15550001000',
      to: target.to,
      status,
      externalId: `${target.id}-1`,
      ...(status === 'failed' ? { errorCode: '131049', whatsappApiError: { code: '131049', message: 'not delivered' } } : {}),
    },
  };
}

async function post(body: string, headers: Record<string, string>) {
  return k.request('POST', '/v1/webhooks/ycloud', { tenant: null, rawBody: body, headers: { 'Content-Type': 'application/json', ...headers } });
}

function signed(body: string, at = Math.floor(Date.now() / 1000)): Record<string, string> {
  return { 'YCloud-Signature': signatureHeader(secret, at, body) };
}

async function webhookCount(result: string): Promise<number> {
  const metrics = await k.kurir.services.metrics.webhookEvents.get();
  return metrics.values.filter((value) => value.labels.result === result).reduce((sum, value) => sum + value.value, 0);
}

describe('signature checks: refused and without effect', () => {
  test('bad signature, stale or future timestamp, malformed or missing header → 401', async () => {
    const target = await sentOnlyVerification();
    const body = JSON.stringify(whatsappEvent(target, 'delivered'));
    const now = Math.floor(Date.now() / 1000);
    const attempts: Record<string, string>[] = [
      { 'YCloud-Signature': signatureHeader('whsec_someone_else', now, body) },
      signed(body, now - 301),
      signed(body, now + 301),
      { 'YCloud-Signature': 'sha256=deadbeef' },
      { 'YCloud-Signature': `t=${now}` },
      { 'YCloud-Signature': `t=${now},s=${'0'.repeat(63)}` },
      {},
    ];
    for (const headers of attempts) {
      const reply = await post(body, headers);
      assert.equal(reply.status, 401, JSON.stringify(headers));
      assert.equal(reply.body.code, 'invalid_signature');
    }
    // A signature over different bytes (re-serialised JSON) does not verify either.
    const reply = await post(body.replace('"delivered"', '"delivered" '), signed(body));
    assert.equal(reply.status, 401);
    const view = await k.get(target.id);
    assert.equal(view.deliveries[0]?.status, 'sent');
  });

  test('wrong content type → 415, not JSON → 400', async () => {
    const text = 'hello';
    const reply = await k.request('POST', '/v1/webhooks/ycloud', {
      tenant: null,
      rawBody: text,
      headers: { 'Content-Type': 'text/plain', ...signed(text) },
    });
    assert.equal(reply.status, 415);
    const notJson = await post(text, signed(text));
    assert.equal(notJson.status, 400);
  });
});

describe('accepted events', () => {
  test('a signed delivered receipt is applied; the same event again has no second effect', async () => {
    const target = await sentOnlyVerification();
    const event = whatsappEvent(target, 'delivered');
    const body = JSON.stringify(event);
    const acceptedBefore = await webhookCount('accepted');
    const first = await post(body, signed(body));
    assert.equal(first.status, 200, first.text);
    const view = await k.waitFor(target.id, (v) => v.deliveries[0]?.status === 'delivered');
    assert.ok(view.deliveries[0]?.deliveredAt);

    const again = await post(body, signed(body));
    assert.equal(again.status, 200);
    assert.equal(again.body.duplicate, true);
    assert.equal((await webhookCount('accepted')) - acceptedBefore, 1);
  });

  test('two failed receipts (distinct events) start a single SMS fallback', async () => {
    const target = await sentOnlyVerification();
    const events = [whatsappEvent(target, 'failed'), whatsappEvent(target, 'failed')].map((event) => JSON.stringify(event));
    const replies = await Promise.all(events.map((body) => post(body, signed(body))));
    assert.deepEqual(replies.map((reply) => reply.status), [200, 200]);
    await k.simulator.waitForMessage((m) => m.to === target.to && m.channel === 'sms', 3000);
    const view = await k.waitFor(target.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries.length, 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(k.sentTo(target.to).filter((m) => m.channel === 'sms').length, 1);
  });

  test('a late "sent" after "delivered" never moves the delivery back', async () => {
    const target = await sentOnlyVerification();
    for (const status of ['read', 'sent', 'accepted']) {
      const body = JSON.stringify(whatsappEvent(target, status));
      assert.equal((await post(body, signed(body))).status, 200);
    }
    const view = await k.waitFor(target.id, (v) => v.deliveries[0]?.status === 'read');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await k.get(target.id)).deliveries[0]?.status, 'read');
    assert.ok(view.deliveries[0]?.deliveredAt);
  });

  test('a receipt for a message Kurir does not know is acknowledged as ignored', async () => {
    const body = JSON.stringify(whatsappEvent({ id: 'ver_0000000000unknown', to: magicNumber('0000'), providerMessageId: `wamid.${randomUUID()}` }, 'delivered'));
    const reply = await post(body, signed(body));
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, { received: true, ignored: true });
  });

  test('a failed receipt whose fallback could not be queued answers 503; the provider\'s retry queues it', async () => {
    const target = await sentOnlyVerification();
    const body = JSON.stringify(whatsappEvent(target, 'failed'));
    const services = k.kurir.services;
    // Redis failing between the receipt script and the fallback's send job.
    const failing: JobQueues = Object.create(services.queues, {
      enqueueSend: { value: async () => Promise.reject(new Error('Connection is closed.')) },
    });
    const unavailableBefore = await webhookCount('unavailable');
    await assert.rejects(
      receiveYCloudWebhook({ rawBody: Buffer.from(body), signatureHeader: signed(body)['YCloud-Signature'] }, { ...services, queues: failing, webhookSecret: secret }),
      (error: { code?: string }) => error.code === 'service_unavailable',
    );
    assert.equal((await webhookCount('unavailable')) - unavailableBefore, 1);
    const applied = await k.get(target.id);
    assert.equal(applied.deliveries[0]?.status, 'failed', 'the receipt itself was applied');
    assert.equal(applied.deliveries[1]?.status, 'queued', 'and the fallback decided, but its send never queued');

    // YCloud retries the same event: nothing changes in the delivery, and the SMS goes out.
    const retry = await post(body, signed(body));
    assert.equal(retry.status, 200, retry.text);
    await k.simulator.waitForMessage((m) => m.to === target.to && m.channel === 'sms', 3000);
    await k.waitFor(target.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(k.sentTo(target.to).filter((m) => m.channel === 'sms').length, 1);
  });

  test('one timer per verification: moved to the delivery timeout while it waits, back to the expiry once delivered', async () => {
    const target = await sentOnlyVerification();
    const timers = `{${k.prefix}-verification-expiry}:verification-expiry:delayed`;
    // BullMQ scores a delayed job by its due time × 4096 (+ a counter).
    const dueAt = async () => Math.floor(Number(await k.redis.zscore(timers, `expire-${target.id}`)) / 4096);
    const view = await k.get(target.id);
    const sentAt = Date.parse(String(view.deliveries[0]?.sentAt));
    const expiresAt = Date.parse(String(view.raw.body.expiresAt));
    assert.ok(Math.abs((await dueAt()) - (sentAt + 30_000)) < 1000, 'due at the delivery timeout');
    assert.equal(await k.kurir.services.queues.queue('delivery-timeout').getJob(`timeout-${target.id}-1`), undefined, 'no timeout job of its own');

    const body = JSON.stringify(whatsappEvent(target, 'delivered'));
    assert.equal((await post(body, signed(body))).status, 200);
    assert.ok(Math.abs((await dueAt()) - expiresAt) < 1000, 'back at the expiry');
  });

  test('unknown event types are acknowledged and counted, not queued', async () => {
    const ignoredBefore = await webhookCount('ignored');
    const body = JSON.stringify({ id: `evt_${randomUUID()}`, type: 'whatsapp.template.reviewed', apiVersion: 'v2', createTime: new Date().toISOString() });
    const reply = await post(body, signed(body));
    assert.equal(reply.status, 200);
    assert.equal(reply.body.ignored, true);
    assert.equal((await webhookCount('ignored')) - ignoredBefore, 1);
  });

  test('an event that is not a YCloud event → 400', async () => {
    const body = JSON.stringify({ hello: 'world' });
    const reply = await post(body, signed(body));
    assert.equal(reply.status, 400);
  });
});
