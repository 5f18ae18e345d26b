/**
 * The verification's timer (its `expire-<id>` job) is armed by the first send that runs, not by
 * the create: the API queues one BullMQ job per create. The send queues are not consumed here,
 * so the test runs each send job itself (`handleSend` on the real BullMQ job) and looks at the
 * timer in between.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jobIds, QUEUES, SEND_QUEUE } from '../../common/jobs/catalogue.js';
import { handleSend } from '../../worker/send.handler.js';
import { magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';

describe("the verification's timer", { timeout: 60_000 }, () => {
  let h: KurirHarness;

  before(async () => {
    h = await startKurir({ WORKER_QUEUES: 'receipts,callbacks' });
  });
  after(async () => {
    await h?.close();
  });

  async function created(to: string, channel: 'sms' | 'auto' = 'sms') {
    const reply = await h.create({ to, channel, purpose: 'login', ttlSeconds: 120 });
    assert.equal(reply.status, 202, reply.text);
    const id = String(reply.body.id);
    const services = h.kurir.services;
    const send = await services.queues.queue(SEND_QUEUE[channel === 'sms' ? 'sms' : 'whatsapp']).getJob(jobIds.send(id, 1));
    assert.ok(send !== undefined, 'the first send job is queued');
    const timer = () => services.queues.queue(QUEUES.verificationExpiry).getJob(jobIds.verificationExpiry(id));
    return { id, send, services, timer, expiresAt: Date.parse(String(reply.body.expiresAt)) };
  }

  test('is not queued by the create; the first send arms it at the expiry, and a second run leaves it as it is', async () => {
    const { id, send, services, timer, expiresAt } = await created(magicNumber('1002'));
    assert.equal(await timer(), undefined, 'the create queued no timer');

    assert.equal((await handleSend(send, services)).outcome, 'sent');
    const armed = await timer();
    assert.ok(armed !== undefined, 'armed by the send');
    assert.deepEqual(armed.data, { verificationId: id, expiresAt });
    assert.equal(await armed.getState(), 'delayed');
    assert.ok(Math.abs(armed.timestamp + armed.delay - expiresAt) < 1000, `due at the expiry, not ${armed.timestamp + armed.delay - expiresAt} ms off`);

    // The same job run again (a replay) sends nothing and queues no second timer.
    assert.deepEqual(await handleSend(send, services), { outcome: 'skipped', reason: 'already_sent' });
    const again = await timer();
    assert.equal(again?.timestamp, armed.timestamp);
  });

  test('a first delivery that may fall back arms it straight at its deadline, with the expiry in its data', async () => {
    const { id, send, services, timer, expiresAt } = await created(magicNumber('1002'), 'auto');
    const outcome = await handleSend(send, services);
    assert.deepEqual(outcome.outcome === 'sent' && outcome.timeoutArmed, true);
    const armed = await timer();
    assert.ok(armed !== undefined, 'armed by the send');
    assert.deepEqual(armed.data, { verificationId: id, expiresAt });
    const sentAt = Date.parse(String((await h.get(id)).deliveries[0]?.sentAt));
    const due = armed.timestamp + armed.delay;
    // The harness's delivery timeout after the send, long before the expiry.
    const timeoutMs = services.config.delivery.timeoutSeconds * 1000;
    assert.ok(due < expiresAt - 60_000, 'not at the expiry');
    assert.ok(Math.abs(due - (sentAt + timeoutMs)) < 200, `due ${due - sentAt} ms after the send, timeout ${timeoutMs} ms`);
  });

  test('a send that comes too late to send the code still arms the timer, so the verification is ended at its expiry', async () => {
    const { send, services, timer, expiresAt } = await created(magicNumber('1002'));
    // The workers were away until the code had less than the minimum lifetime left.
    const late = { ...services, now: () => expiresAt - 1000 };
    const outcome = await handleSend(send, late);
    assert.deepEqual(outcome, { outcome: 'skipped', reason: 'verification_expired' });
    const armed = await timer();
    assert.ok(armed !== undefined, 'the timer is armed');
    assert.equal((armed.data as { expiresAt: number }).expiresAt, expiresAt);
    assert.equal(h.simulator.messages().filter((m) => m.externalId === `${String(send.data.verificationId)}-1`).length, 0, 'nothing sent');
  });
});
