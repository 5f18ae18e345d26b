import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { acceptedByExternalId, metricValue, numberFactory, pooled, startChaosKurir, type ChaosKurir, type CreateReply } from '../helpers/chaos/cluster.js';

/**
 * Issue 4, acceptance 6: a burst of about 10× the sustainable rate → nothing lost, the backlog
 * drains, and no code is delivered after its expiry.
 *
 * The send side is throttled to a known, small capacity (3 concurrent sends, the provider
 * answering in 150 ms; every role in one process, whose /metrics then counts the skipped sends —
 * completed send jobs are not kept) and the create side fires as fast as the API takes it, with a
 * policy that lifts every limit. The codes live 30 s (the fixture purpose `chaos_burst`), so the
 * backlog outlives part of them: those must be dropped by the send gate, never sent late.
 * "Nothing lost" = every accepted verification is either sent before its expiry or ends expired
 * with its send job completed as skipped — no job failed, none stuck, no delivery left `sending`.
 */

const POLICY = fileURLToPath(new URL('./chaos.policy.yaml', import.meta.url));
const BURST = 1500;

describe('chaos 6: burst of 10× the sustainable rate', { timeout: 120_000 }, () => {
  let kurir: ChaosKurir;
  let replies: CreateReply[] = [];
  let burstMs = 0;
  let drainMs = 0;

  before(async () => {
    kurir = await startChaosKurir({
      embedded: true,
      env: { KURIR_POLICY_FILE: POLICY, WORKER_CONCURRENCY: '3', KURIR_DELIVERY_TIMEOUT_SECONDS: '5' },
      proxy: { answerDelayMs: () => 150 },
    });
    const next = numberFactory();
    const started = Date.now();
    replies = await pooled(Array.from({ length: BURST }), 60, () => kurir.create({ to: next(), purpose: 'chaos_burst' }));
    burstMs = Date.now() - started;
    drainMs = await kurir.waitSettled({ timeoutMs: 70_000, quietMs: 1500 });
  });

  after(async () => {
    await kurir?.close();
  });

  test('the burst was accepted whole, at well above the sustainable send rate', (t) => {
    assert.deepEqual([...new Set(replies.map((r) => r.status))], [202]);
    const sends = [...acceptedByExternalId(kurir.simulator).values()].flat().sort((a, b) => a - b);
    const spanS = ((sends.at(-1) ?? 0) - (sends[0] ?? 0)) / 1000;
    const sustainable = sends.length / Math.max(spanS, 0.001);
    const burstRate = BURST / (burstMs / 1000);
    t.diagnostic(
      `burst: ${BURST} creates in ${burstMs} ms (${burstRate.toFixed(0)}/s); sends: ${sends.length} over ${spanS.toFixed(1)} s (${sustainable.toFixed(1)}/s sustained); ` +
        `ratio ${(burstRate / sustainable).toFixed(1)}×; backlog drained ${drainMs} ms after the burst`,
    );
    assert.ok(burstRate / sustainable >= 5, `the burst was only ${(burstRate / sustainable).toFixed(1)}× the send rate`);
  });

  test('no code was delivered at or after its expiry', (t) => {
    const expiresAt = new Map(replies.map((r) => [r.id, r.expiresAt ?? 0]));
    const late: string[] = [];
    let closest = Number.POSITIVE_INFINITY;
    for (const message of kurir.simulator.messages()) {
      if (message.httpStatus !== 200 || message.externalId === undefined) continue;
      const id = message.externalId.slice(0, message.externalId.lastIndexOf('-'));
      const expiry = expiresAt.get(id);
      if (expiry === undefined) continue;
      closest = Math.min(closest, expiry - message.receivedAt);
      if (message.receivedAt >= expiry) late.push(`${message.externalId} ${message.receivedAt - expiry} ms late`);
    }
    t.diagnostic(`smallest margin between a send and its code's expiry: ${closest} ms; sends at or after expiry: ${late.length}`);
    assert.deepEqual(late, []);
  });

  test('nothing lost: every verification was sent in time or dropped as expired, no job failed, none stuck', async (t) => {
    const accepted = acceptedByExternalId(kurir.simulator);
    const stored = new Map((await kurir.verifications()).map((v) => [v.id, v]));
    const sent = replies.filter((r) => accepted.has(`${r.id}-1`));
    const unsent = replies.filter((r) => !accepted.has(`${r.id}-1`));
    const notExpired = unsent.filter((r) => {
      const v = stored.get(r.id ?? '');
      // Gone from Redis means it ended and its retention ran out; otherwise it must have expired unsent.
      return v !== undefined && !(v.status === 'expired' || Date.now() >= v.expiresAt);
    });
    const stuck = [...stored.values()].flatMap((v) => v.deliveries.filter((d) => d.status === 'sending' || d.status === 'retrying').map((d) => `${v.id}-${d.n}`));
    const counts = await kurir.counts();
    const metrics = await kurir.metrics();
    // `stale`: the send gate refused a verification that is no longer pending (or about to expire).
    const dropped = metricValue(metrics, 'kurir_jobs_skipped_total', { queue: 'send-whatsapp', reason: 'stale' });
    const alreadySent = metricValue(metrics, 'kurir_jobs_skipped_total', { queue: 'send-whatsapp', reason: 'done' });
    t.diagnostic(`sent in time: ${sent.length}; dropped unsent as expired: ${unsent.length} (send jobs skipped: stale ${dropped}, done ${alreadySent}); failed jobs: ${counts['send-whatsapp'].failed ?? 0}`);
    assert.deepEqual(notExpired.map((r) => r.id), [], 'unsent verifications that have not expired: lost');
    assert.deepEqual(stuck, []);
    assert.equal(counts['send-whatsapp'].failed ?? 0, 0);
    assert.equal(dropped, unsent.length, 'every unsent verification must have had its send job skipped as stale');
  });
});
