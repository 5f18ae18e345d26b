import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TENANTS, magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';
import { containsCode, dumpPrefix } from '../helpers/redis-dump.js';

/**
 * The core pipeline end to end: HTTP API → Redis/BullMQ → send workers → simulator (YCloud's
 * HTTP contract) → signed webhooks → receipts worker → scheduler timeouts → SMS fallback → check.
 * Delivery timeout is 1 s here; the simulator answers receipts after 20 ms.
 */
let k: KurirHarness;

before(async () => {
  k = await startKurir();
});
after(async () => {
  await k.close();
});

async function createFor(to: string, extra: Record<string, unknown> = {}) {
  const reply = await k.create({ to, purpose: 'login', ...extra });
  assert.equal(reply.status, 202, reply.text);
  return reply.body as { id: string; plan: string[]; channel: string; expiresAt: string; locale: string };
}

async function check(id: string, code: string) {
  const reply = await k.request('POST', `/v1/verifications/${id}/check`, { body: { code } });
  assert.equal(reply.status, 200, reply.text);
  return reply.body as { status: string; valid: boolean; attemptsRemaining: number };
}

function wrongCode(code: string): string {
  return code === '000000' ? '111111' : '000000';
}

describe('WhatsApp first, SMS fallback', () => {
  test('WhatsApp delivered: no SMS, the code approves exactly once', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    assert.deepEqual(created.plan, ['whatsapp', 'sms']);
    assert.equal(created.locale, 'id');
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    assert.equal(whatsapp.externalId, `${created.id}-1`);
    const view = await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered');
    assert.ok(view.deliveries[0]?.deliveredAt);

    // Past the 1 s delivery timeout: the timer was removed by the receipt, so nothing else goes out.
    await new Promise((resolve) => setTimeout(resolve, 1300));
    assert.deepEqual(k.sentTo(to).map((m) => m.channel), ['whatsapp']);

    const code = whatsapp.code ?? '';
    assert.match(code, /^\d{6}$/);
    assert.deepEqual(await check(created.id, code), { id: created.id, status: 'approved', valid: true, attemptsRemaining: 4 });
    const again = await check(created.id, code);
    assert.equal(again.valid, false);
    assert.notEqual(again.status, 'approved');
    assert.equal((await k.get(created.id)).status, 'approved');
  });

  test('WhatsApp failed receipt: SMS with the same code within 2 s', async () => {
    const to = magicNumber('1001');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 2000);
    assert.ok(sms.receivedAt - whatsapp.receivedAt < 2000, `SMS came ${sms.receivedAt - whatsapp.receivedAt} ms after WhatsApp`);
    assert.equal(sms.code, whatsapp.code);
    assert.equal(sms.externalId, `${created.id}-2`);
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries[0]?.status, 'failed');
    assert.equal(view.deliveries[0]?.errorCode, '131049');
    assert.equal(view.deliveries[0]?.fellBackTo, 2);
    assert.equal(view.deliveries[1]?.reason, 'failed');
    assert.equal((await check(created.id, sms.code ?? '')).status, 'approved');
  });

  test('no delivery receipt: SMS with the same code after the delivery timeout', async () => {
    const to = magicNumber('1002');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 4000);
    const waited = sms.receivedAt - whatsapp.receivedAt;
    assert.ok(waited >= 900, `SMS went out ${waited} ms after WhatsApp, before the 1 s timeout`);
    assert.equal(sms.code, whatsapp.code);
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries[0]?.status, 'sent');
    assert.equal(view.deliveries[1]?.reason, 'timeout');
    assert.deepEqual(k.sentTo(to).map((m) => m.channel), ['whatsapp', 'sms']);
  });

  test('not a WhatsApp user (131026): SMS at once, and the next code for that number skips WhatsApp', async () => {
    const to = magicNumber('1003');
    const created = await createFor(to);
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 2000);
    const refused = k.sentTo(to).find((m) => m.channel === 'whatsapp');
    assert.equal(refused?.httpStatus, 400);
    assert.ok(sms.receivedAt - (refused?.receivedAt ?? 0) < 1000);
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries[0]?.status, 'failed');
    assert.equal(view.deliveries[0]?.errorCode, 'whatsapp_131026');
    assert.equal(view.deliveries[1]?.reason, 'rejected');

    const second = await createFor(to);
    assert.deepEqual(second.plan, ['sms']);
  });

  test('slow receipt: fallback on timeout, and the late delivery is recorded as a double send', async () => {
    const to = magicNumber('1006');
    const created = await createFor(to);
    await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 4000);
    const view = await k.waitFor(created.id, (v) => v.deliveries[0]?.deliveredAfterFallback === true, 6000);
    assert.equal(view.deliveries[0]?.status, 'delivered');
    assert.equal(view.deliveries[0]?.fellBackTo, 2);
    assert.equal(view.deliveries.length, 2);
  });

  test('read without delivered counts as delivered and stops the timeout', async () => {
    const to = magicNumber('1007');
    const created = await createFor(to);
    const view = await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'read');
    assert.ok(view.deliveries[0]?.deliveredAt, 'read implies a delivered time');
    await new Promise((resolve) => setTimeout(resolve, 1300));
    assert.deepEqual(k.sentTo(to).map((m) => m.channel), ['whatsapp']);
  });

  test('duplicate and out-of-order receipts never move a delivery backwards', async () => {
    const to = magicNumber('1008');
    const created = await createFor(to);
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const view = await k.get(created.id);
    assert.equal(view.deliveries[0]?.status, 'delivered');
    assert.equal(view.deliveries.length, 1);
  });

  test('provider 5xx twice: retried with backoff, then WhatsApp goes through', async () => {
    const to = magicNumber('1005');
    const created = await createFor(to);
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered', 8000);
    const calls = k.sentTo(to);
    assert.deepEqual(calls.map((m) => [m.channel, m.httpStatus]), [['whatsapp', 503], ['whatsapp', 503], ['whatsapp', 200]]);
  });

  test('provider 5xx every time: retries up to the limit, then SMS', async () => {
    const to = magicNumber('1004');
    const created = await createFor(to);
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 8000);
    const whatsappCalls = k.sentTo(to).filter((m) => m.channel === 'whatsapp');
    assert.equal(whatsappCalls.length, 3);
    assert.ok(whatsappCalls.every((m) => m.httpStatus === 503));
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries[0]?.errorCode, 'SERVICE_UNAVAILABLE');
    assert.equal(sms.externalId, `${created.id}-2`);
  });

  test('WhatsApp rate limited (429): SMS now, no retry loop', async () => {
    const to = magicNumber('1009');
    await createFor(to);
    await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 2000);
    assert.equal(k.sentTo(to).filter((m) => m.channel === 'whatsapp').length, 1);
  });
});

describe('channels and checks', () => {
  test('channel "sms" pins SMS and sends nothing else', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to, { channel: 'sms' });
    assert.deepEqual(created.plan, ['sms']);
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered');
    await new Promise((resolve) => setTimeout(resolve, 1300));
    assert.deepEqual(k.sentTo(to).map((m) => m.channel), ['sms']);
  });

  test('an SMS-only country gets SMS in English', async () => {
    const to = '+16502531234';
    const created = await createFor(to);
    assert.deepEqual(created.plan, ['sms']);
    assert.equal(created.locale, 'en');
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms');
    assert.match(sms.text ?? '', /expires in 5 minutes/);
  });

  test('an email destination gets an email', async () => {
    const to = `User.${Date.now()}@Example.com`;
    const created = await createFor(to, { locale: 'pt-BR' });
    assert.deepEqual(created.plan, ['email']);
    const email = await k.simulator.waitForMessage((m) => m.to === to.toLowerCase() && m.channel === 'email');
    assert.match(email.code ?? '', /^\d{6}$/);
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered');
    assert.equal((await check(created.id, email.code ?? '')).status, 'approved');
  });

  test('five wrong codes: max_attempts, then the right code is refused', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const code = whatsapp.code ?? '';
    const remaining: number[] = [];
    for (let i = 0; i < 5; i += 1) remaining.push((await check(created.id, wrongCode(code))).attemptsRemaining);
    assert.deepEqual(remaining, [4, 3, 2, 1, 0]);
    const final = await check(created.id, code);
    assert.deepEqual([final.status, final.valid], ['max_attempts', false]);
    assert.equal((await k.get(created.id)).status, 'max_attempts');
  });

  test('resend on another channel sends the same code; cooldown applies', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const tooSoon = await k.request('POST', `/v1/verifications/${created.id}/resend`, { body: { channel: 'sms' } });
    assert.equal(tooSoon.status, 429);
    assert.equal(tooSoon.body.code, 'resend_cooldown');
    assert.ok(Number(tooSoon.headers.get('retry-after')) >= 1);
    assert.match(tooSoon.headers.get('content-type') ?? '', /^application\/problem\+json/);

    await new Promise((resolve) => setTimeout(resolve, 1000)); // the e2e policy's cooldown is 1 s
    const resent = await k.request('POST', `/v1/verifications/${created.id}/resend`, { body: { channel: 'sms' } });
    assert.equal(resent.status, 202, resent.text);
    assert.deepEqual([resent.body.delivery, resent.body.channel], [2, 'sms']);
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms');
    assert.equal(sms.code, whatsapp.code);
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries[1]?.reason, 'user_choice');
    assert.equal(view.channel, 'sms');
    const fallbacks = await k.kurir.services.metrics.fallbacks.get();
    const userChoice = fallbacks.values.find((value) => value.labels.reason === 'user_choice' && value.labels.from === 'whatsapp' && value.labels.to === 'sms');
    assert.ok((userChoice?.value ?? 0) >= 1, 'the channel switch is counted as a user_choice fallback');
  });

  test('at most five sends per verification', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to, { channel: 'sms' });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      statuses.push((await k.request('POST', `/v1/verifications/${created.id}/resend`)).status);
    }
    assert.deepEqual(statuses, [202, 202, 202, 202, 429]);
  });

  test('cancel: the code no longer verifies', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const canceled = await k.request('POST', `/v1/verifications/${created.id}/cancel`);
    assert.equal(canceled.status, 200, canceled.text);
    assert.equal((await check(created.id, whatsapp.code ?? '')).status, 'canceled');
    const twice = await k.request('POST', `/v1/verifications/${created.id}/cancel`);
    assert.equal(twice.status, 409);
  });
});

describe('idempotency and tenants', () => {
  test('the same Idempotency-Key and body: the same verification and a single send', async () => {
    const to = magicNumber('0000');
    const key = `idem-${Date.now()}`;
    const first = await k.create({ to, purpose: 'payment' }, { 'Idempotency-Key': key });
    const second = await k.create({ to, purpose: 'payment' }, { 'Idempotency-Key': key });
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    await k.waitFor(String(first.body.id), (v) => v.deliveries[0]?.status === 'delivered');
    assert.equal(k.sentTo(to).length, 1);

    const reused = await k.create({ to, purpose: 'login' }, { 'Idempotency-Key': key });
    assert.equal(reused.status, 422);
    assert.equal(reused.body.code, 'idempotency_key_reused');
    // Another destination names another verification id (its slot is the destination's), so the
    // key's marker is what refuses it: nothing is created or sent.
    const elsewhere = magicNumber('0000');
    const moved = await k.create({ to: elsewhere, purpose: 'payment' }, { 'Idempotency-Key': key });
    assert.equal(moved.status, 422, moved.text);
    assert.equal(moved.body.code, 'idempotency_key_reused');
    assert.equal(k.sentTo(elsewhere).length, 0);
  });

  test("another tenant's verification answers like an unknown id", async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const foreign = await k.request('GET', `/v1/verifications/${created.id}`, { tenant: 'beta' });
    const unknown = await k.request('GET', '/v1/verifications/ver_000000000000000000000000', { tenant: 'beta' });
    assert.equal(foreign.status, 404);
    assert.deepEqual(foreign.body, unknown.body);
    const foreignCheck = await k.request('POST', `/v1/verifications/${created.id}/check`, { tenant: 'beta', body: { code: whatsapp.code } });
    const unknownCheck = await k.request('POST', '/v1/verifications/ver_000000000000000000000000/check', {
      tenant: 'beta',
      body: { code: whatsapp.code },
    });
    assert.equal(foreignCheck.status, unknownCheck.status);
    assert.deepEqual({ ...foreignCheck.body, id: 'x' }, { ...unknownCheck.body, id: 'x' });
    // The owner's code still works: the foreign attempt did not count.
    assert.equal((await check(created.id, whatsapp.code ?? '')).attemptsRemaining, 4);
  });
});

describe('after the full run', () => {
  test('no plaintext code anywhere in Redis (keys, values, job data) or in the logs', async () => {
    const codes = [...new Set(k.simulator.messages().map((m) => m.code).filter((code): code is string => code !== undefined))];
    assert.ok(codes.length >= 15, `expected the run to have sent many codes, saw ${codes.length}`);
    const stored = await dumpPrefix(k.redis, k.prefix);
    assert.ok(stored.length > 50, 'the dump should see the verifications and the queues');
    assert.ok(stored.some((value) => value.includes('send-ver_')), 'job data and ids are part of the scan');
    for (const code of codes) {
      const hit = stored.find((value) => containsCode(value, code));
      assert.equal(hit, undefined, `code found in Redis: ${hit?.slice(0, 200)}`);
      const logged = k.logs.find((line) => containsCode(line, code));
      assert.equal(logged, undefined, `code found in a log line: ${logged?.slice(0, 200)}`);
    }
    for (const text of k.simulator.messages().map((m) => m.text).filter((t): t is string => t !== undefined && t.length > 20)) {
      assert.ok(!stored.some((value) => value.includes(text)), 'a message text was stored');
    }
  });

  test('logs and /metrics hold no code, no API key and no full phone number or email address', async () => {
    const metrics = (await k.request('GET', '/metrics', { tenant: null })).text;
    assert.match(metrics, /kurir_fallbacks_total\{[^}]*reason="timeout"/, 'the run left its traces in the metrics');
    const haystacks = [...k.logs, metrics];
    assert.ok(k.logs.length > 100, `expected a busy log, saw ${k.logs.length} lines`);
    const destinations = [...new Set(k.simulator.messages().map((m) => m.to))];
    assert.ok(destinations.length >= 10);
    for (const secret of [...Object.values(TENANTS), ...destinations]) {
      const hit = haystacks.find((text) => text.toLowerCase().includes(secret.toLowerCase()));
      assert.equal(hit, undefined, `found ${secret.slice(0, 4)}… in: ${hit?.slice(0, 200)}`);
    }
    // Not even the national number without its country code.
    for (const destination of destinations.filter((to) => to.startsWith('+62'))) {
      const national = destination.slice(3);
      assert.equal(haystacks.find((text) => text.includes(national)), undefined, 'a national number leaked');
    }
  });
});
