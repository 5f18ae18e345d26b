import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { SimulatedMessage } from '../../simulator/simulator.js';
import { acceptedByExternalId, numberFactory, paced, startChaosKurir, type ChaosKurir } from '../helpers/chaos/cluster.js';

/**
 * Issue 4, acceptance 5: 100 repetitions of "a delivered receipt and the delivery timeout fire
 * together" → at most one SMS per verification.
 *
 * Driven directly: `…1002` numbers (the simulator only ever reports `sent`), a 1 s delivery
 * timeout, and a signed `delivered` webhook that this test posts itself at the moment the timer
 * is due — the provider's answer time + 1 s, shifted by an offset that sweeps −200…+200 ms
 * across the 100 repetitions, so both orders happen and many land within milliseconds of each
 * other. The timer fires in the scheduler process, the receipt is applied in a worker process.
 */

const POLICY = fileURLToPath(new URL('./chaos.policy.yaml', import.meta.url));
const REPETITIONS = 100;
const SPREAD_MS = 200;

function deliveredEvent(message: SimulatedMessage, at: Date): Record<string, unknown> {
  const time = at.toISOString();
  return {
    id: `evt_chaos_${message.id}`,
    type: 'whatsapp.message.updated',
    apiVersion: 'v2',
    createTime: time,
    whatsappMessage: {
      id: message.id,
      wabaId: 'sim_waba_000000000001',
      from: '+15550001000',
      to: message.to,
      type: 'template',
      externalId: message.externalId,
      status: 'delivered',
      createTime: new Date(message.receivedAt).toISOString(),
      updateTime: time,
      sendTime: time,
      deliverTime: time,
      bizType: 'whatsapp',
    },
  };
}

interface Race {
  id: string;
  offsetMs: number;
  /** When the webhook was posted, relative to the provider's answer + timeout. */
  postedLateByMs: number;
  webhookStatus: number;
}

describe('chaos 5: delivered receipt and delivery timeout at the same moment', { timeout: 90_000 }, () => {
  let kurir: ChaosKurir;
  const races: Race[] = [];

  before(async () => {
    kurir = await startChaosKurir({
      workers: 1,
      env: { KURIR_POLICY_FILE: POLICY, KURIR_DELIVERY_TIMEOUT_SECONDS: '1' },
    });
    const next = numberFactory();
    const webhooks: Promise<void>[] = [];
    await paced(REPETITIONS, 25, 50, async (i) => {
      const reply = await kurir.create({ to: next('1002'), purpose: 'login' });
      assert.equal(reply.status, 202, JSON.stringify(reply.body));
      const id = reply.id ?? '';
      const offsetMs = -SPREAD_MS + Math.round((2 * SPREAD_MS * i) / (REPETITIONS - 1));
      const sent = await kurir.simulator.waitForMessage((m) => m.externalId === `${id}-1` && m.httpStatus === 200, 10_000);
      const due = sent.receivedAt + 1000 + offsetMs;
      webhooks.push(
        (async () => {
          while (Date.now() < due) await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(5, due - Date.now()))));
          const postedLateByMs = Date.now() - (sent.receivedAt + 1000);
          const webhookStatus = await kurir.postWebhook(deliveredEvent(sent, new Date()));
          races.push({ id, offsetMs, postedLateByMs, webhookStatus });
        })(),
      );
    });
    await Promise.all(webhooks);
    await kurir.waitSettled({ timeoutMs: 30_000, quietMs: 1500 });
  });

  after(async () => {
    await kurir?.close();
  });

  test('every webhook was accepted', () => {
    assert.equal(races.length, REPETITIONS);
    assert.deepEqual(races.filter((r) => r.webhookStatus !== 200), []);
  });

  test('at most one SMS per verification, and the record agrees with what was sent', async (t) => {
    const accepted = acceptedByExternalId(kurir.simulator);
    const byId = new Map((await kurir.verifications()).map((v) => [v.id, v]));
    const fellBack: Race[] = [];
    const inconsistent: string[] = [];
    for (const race of races) {
      const sms = accepted.get(`${race.id}-2`)?.length ?? 0;
      assert.ok(sms <= 1, `${race.id}: ${sms} SMS`);
      assert.ok(!accepted.has(`${race.id}-3`), `${race.id}: a third delivery went out`);
      const first = byId.get(race.id)?.deliveries[0];
      // Timer first: the fallback went out and the receipt is recorded as a late double send.
      // Receipt first: delivered, no fallback, no SMS.
      const timerFirst = first?.fellBackTo === 2 && first.deliveredAfterFallback === true && sms === 1;
      const receiptFirst = first?.fellBackTo === undefined && first?.status === 'delivered' && first.deliveredAfterFallback === false && sms === 0;
      if (!timerFirst && !receiptFirst) inconsistent.push(`${race.id}: ${JSON.stringify(first)} sms=${sms}`);
      if (timerFirst) fellBack.push(race);
    }
    const offsets = fellBack.map((r) => r.offsetMs);
    const receiptWon = races.filter((r) => !fellBack.includes(r)).map((r) => r.offsetMs);
    t.diagnostic(
      `${fellBack.length} of ${races.length} fell back to SMS (timer first), ${receiptWon.length} were delivered without SMS (receipt first); ` +
        `latest receipt that still won: ${receiptWon.length > 0 ? Math.max(...receiptWon) : '-'} ms, earliest that lost: ${offsets.length > 0 ? Math.min(...offsets) : '-'} ms (offsets from answer + 1 s)`,
    );
    assert.deepEqual(inconsistent, []);
    // Both orders must have happened, or the test did not race anything.
    assert.ok(fellBack.length > 0 && receiptWon.length > 0, 'all repetitions ended the same way: the race was not exercised');
  });
});
