/**
 * A delivery left in doubt by a worker that died mid-call (issue 4: "no delivery sent twice").
 * The send queues are not consumed here, so the test plays the dead worker itself — it takes the
 * delivery (`beginSend` with its own token) and maybe hands the message to the simulator — and
 * then runs the job the way the next worker would (`handleSend` on the real BullMQ job).
 * Reconciled against the simulator's log.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jobIds, SEND_QUEUE } from '../../common/jobs/catalogue.js';
import { externalIdFor } from '../../common/store/verification.store.js';
import { handleSend } from '../../worker/send.handler.js';
import { magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';

describe('a send left in doubt by a dead worker', { timeout: 60_000 }, () => {
  let h: KurirHarness;

  before(async () => {
    // Nothing consumes the send queues: the test is the "next worker".
    h = await startKurir({ WORKER_QUEUES: 'receipts,callbacks' });
  });
  after(async () => {
    await h?.close();
  });

  async function createAndDie(body: Record<string, unknown>, options: { providerGotIt: boolean }) {
    const created = await h.create(body);
    assert.equal(created.status, 202, created.text);
    const id = String(created.body.id);
    const services = h.kurir.services;
    const view = await h.get(id);
    const channel = view.deliveries[0]?.channel as 'whatsapp' | 'sms';
    const job = await services.queues.queue(SEND_QUEUE[channel]).getJob(jobIds.send(id, 1));
    assert.ok(job !== undefined, 'the first send job is queued');
    // The dead worker took the delivery and (maybe) reached the provider, then died before mark_sent.
    const taken = await services.store.beginSend(id, 1, Date.now(), 'dead-worker#1');
    assert.equal(taken.kind, 'go');
    if (options.providerGotIt) {
      const to = String(body.to);
      const externalId = externalIdFor(id, 1);
      await services.provider.send(
        channel === 'sms'
          ? { channel, to, externalId, text: 'code (sent by the worker that died)' }
          : { channel, to, externalId, templateName: 'otp', templateLanguage: 'en_US', code: '000000' },
      );
    }
    return { id, job, channel, services };
  }

  const calls = (externalId: string) => h.simulator.messages().filter((m) => m.externalId === externalId && m.httpStatus === 200);

  test('SMS the provider already has: found by lookup, adopted, not sent again', async () => {
    const to = magicNumber('1002');
    const { id, job, services } = await createAndDie({ to, channel: 'sms', purpose: 'login' }, { providerGotIt: true });
    const [first] = calls(`${id}-1`);
    assert.ok(first !== undefined);

    const outcome = await handleSend(job, services);
    assert.deepEqual(outcome, { outcome: 'sent', providerMessageId: first.id, timeoutArmed: false });
    assert.equal(calls(`${id}-1`).length, 1, 'sent twice');
    const view = await h.get(id);
    assert.ok(['accepted', 'sent'].includes(view.deliveries[0]?.status ?? ''), JSON.stringify(view.deliveries));
  });

  test('SMS the provider does not have (the worker died before the call): sent once', async () => {
    const to = magicNumber('1001');
    const { id, job, services } = await createAndDie({ to, channel: 'sms', purpose: 'login' }, { providerGotIt: false });
    const outcome = await handleSend(job, services);
    assert.equal(outcome.outcome, 'sent');
    assert.equal(calls(`${id}-1`).length, 1);
  });

  test('WhatsApp cannot be looked up: not sent again, the SMS fallback is queued instead', async () => {
    const to = magicNumber('1002');
    const { id, job, services } = await createAndDie({ to, purpose: 'login' }, { providerGotIt: true });
    const outcome = await handleSend(job, services);
    assert.deepEqual(outcome, { outcome: 'skipped', reason: 'in_doubt_fell_back' });
    assert.equal(calls(`${id}-1`).length, 1, 'WhatsApp sent twice');
    const view = await h.get(id);
    assert.deepEqual(
      view.deliveries.map((d) => [d.n, d.channel, d.status, d.errorCode]),
      [
        [1, 'whatsapp', 'failed', 'in_doubt'],
        [2, 'sms', 'queued', null],
      ],
    );
    assert.ok((await services.queues.queue(SEND_QUEUE.sms).getJob(jobIds.send(id, 2))) !== undefined, 'the SMS send job is queued');
    const metrics = await services.metrics.registry.metrics();
    assert.match(metrics, /kurir_sends_in_doubt_total\{[^}]*channel="whatsapp"[^}]*cause="worker_lost"[^}]*resolution="fell_back"[^}]*\} [1-9]/);
  });
});
