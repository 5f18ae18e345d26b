import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { acceptedByExternalId, numberFactory, pooled, startChaosKurir, type ChaosKurir } from '../helpers/chaos/cluster.js';

/**
 * Issue 4, acceptance 2: Redis restarted (AOF on, `appendfsync always`) while verifications are
 * pending and fallback timers are armed; afterwards every one is delivered or falls back.
 *
 * "Pending" is made deterministic by pausing the `send-sms` queue (BullMQ's global pause, kept in
 * Redis) and creating SMS-only verifications: their send jobs wait, untouched, across the
 * restart. The timers are real: `…1002` numbers are sent on WhatsApp, which never confirms, so
 * each has its timer (the verification's expiry job, moved to the delivery's deadline) delayed in
 * Redis when Redis goes down. Every Kurir process
 * (API, two workers, scheduler) keeps running through the restart and has to reconnect by itself.
 */

const POLICY = fileURLToPath(new URL('./chaos.policy.yaml', import.meta.url));
const TIMEOUT_SECONDS = 12;
const DOWN_MS = 3000;

describe('chaos 2: Redis restart with pending verifications and armed fallback timers', { timeout: 150_000 }, () => {
  let kurir: ChaosKurir;
  const next = numberFactory();

  before(async () => {
    kurir = await startChaosKurir({
      workers: 2,
      env: { KURIR_POLICY_FILE: POLICY, KURIR_DELIVERY_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS) },
    });
  });

  after(async () => {
    await kurir?.close();
  });

  /**
   * Delivery timeouts armed: verification timers due within the delivery timeout (the others wait
   * for their expiry, minutes away) and timeout jobs of their own. BullMQ scores delayed jobs as
   * timestamp × 4096 (+ a counter).
   */
  async function armedTimeouts(): Promise<number> {
    const until = (Date.now() + TIMEOUT_SECONDS * 1000) * 4096;
    const moved = await kurir.inspect.zcount(`{${kurir.prefix}-verification-expiry}:verification-expiry:delayed`, 0, until);
    const own = (await kurir.queue('delivery-timeout').getJobCounts('delayed')).delayed ?? 0;
    return moved + own;
  }

  async function restartRound(t: { diagnostic(message: string): void }, signal: 'SIGKILL' | 'SIGTERM', pending: number, timers: number): Promise<void> {
    const sms = kurir.queue('send-sms');
    await sms.pause();
    const pendingReplies = await pooled(Array.from({ length: pending }), 40, () => kurir.create({ to: next(), purpose: 'login', channel: 'sms' }));
    assert.deepEqual([...new Set(pendingReplies.map((r) => r.status))], [202]);

    const armedAt = Date.now();
    const timerReplies = await pooled(Array.from({ length: timers }), 40, () => kurir.create({ to: next('1002'), purpose: 'login' }));
    assert.deepEqual([...new Set(timerReplies.map((r) => r.status))], [202]);
    // Every WhatsApp send of a …1002 number arms its timer once the provider took the message.
    const deadline = Date.now() + 15_000;
    let armed = 0;
    while (Date.now() < deadline) {
      armed = await armedTimeouts();
      if (armed >= timers) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(armed, timers, 'not every fallback timer was armed before the restart');
    const before = await kurir.counts();
    const waitingSms = (before['send-sms'].paused ?? 0) + (before['send-sms'].wait ?? 0);
    assert.ok(Date.now() - armedAt < TIMEOUT_SECONDS * 1000, 'the first timers could have fired before the restart');

    // Down for a few seconds, as a real restart or failover is: long enough for the clients'
    // reconnect back-off to grow and every blocking BullMQ connection to notice.
    const down = Date.now();
    await kurir.redis.stop(signal);
    await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
    await kurir.redis.start();
    const downMs = Date.now() - down;
    const afterRestart = await kurir.counts();
    const keptSms = (afterRestart['send-sms'].paused ?? 0) + (afterRestart['send-sms'].wait ?? 0);
    const timerCounts = afterRestart['delivery-timeout'];
    const keptTimers = (await armedTimeouts()) + (timerCounts.wait ?? 0) + (timerCounts.active ?? 0);
    t.diagnostic(`${signal}: Redis down ${downMs} ms (AOF reload included); before: ${waitingSms} SMS sends waiting, ${armed} timers delayed; after: ${keptSms} waiting, ${keptTimers} timers`);
    assert.equal(keptSms, waitingSms, 'queued send jobs lost in the restart');
    assert.equal(keptTimers, armed, 'armed timers lost in the restart');

    const resumed = Date.now();
    await sms.resume();
    // The API reconnects too: a create after the restart is accepted.
    const probe = await kurir.create({ to: next(), purpose: 'login' });
    assert.equal(probe.status, 202, JSON.stringify(probe.body));

    const settledMs = await kurir.waitSettled({ timeoutMs: 90_000, quietMs: 1500 });
    // The timers are verification timers, which waitSettled does not wait for (they are due at
    // the expiry otherwise): wait for the timeouts themselves, then for the SMS they queued.
    const timersDue = armedAt + TIMEOUT_SECONDS * 1000 + downMs + 2000 - Date.now();
    if (timersDue > 0) {
      await new Promise((resolve) => setTimeout(resolve, timersDue));
      await kurir.waitSettled({ timeoutMs: 60_000, quietMs: 1500 });
    }
    const accepted = acceptedByExternalId(kurir.simulator);
    const channelOf = new Map(kurir.simulator.messages().filter((m) => m.httpStatus === 200).map((m) => [m.externalId, m.channel]));
    const undelivered = pendingReplies.filter((r) => !accepted.has(`${r.id}-1`));
    const noFallback = timerReplies.filter((r) => !accepted.has(`${r.id}-1`) || channelOf.get(`${r.id}-2`) !== 'sms');
    const sent = pendingReplies.flatMap((r) => accepted.get(`${r.id}-1`) ?? []).sort((a, b) => a - b);
    t.diagnostic(
      `${signal}: drained ${settledMs} ms after resume (${pending} sends from ${sent.length > 0 ? (sent[0] ?? 0) - resumed : '?'} ms to ${sent.length > 0 ? (sent.at(-1) ?? 0) - resumed : '?'} ms); ` +
        `lost: ${undelivered.length} pending, ${noFallback.length} fallbacks`,
    );
    assert.deepEqual(undelivered.map((r) => r.id), [], 'pending verifications never sent after the restart');
    assert.deepEqual(noFallback.map((r) => r.id), [], 'armed timers that never fell back to SMS');
    const twice = [...pendingReplies, ...timerReplies].flatMap((r) => [1, 2].map((n) => `${r.id}-${n}`)).filter((id) => (accepted.get(id)?.length ?? 0) > 1);
    assert.deepEqual(twice, [], 'deliveries sent twice');
  }

  test('SIGKILL while 1,000 verifications are pending and 100 fallback timers are armed: none lost', async (t) => {
    await restartRound(t, 'SIGKILL', 1000, 100);
  });

  test('clean SIGTERM restart with 300 pending and 30 timers: none lost', async (t) => {
    await restartRound(t, 'SIGTERM', 300, 30);
  });
});
