import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { metricValue, numberFactory, pooled, startChaosKurir, type ChaosKurir } from '../helpers/chaos/cluster.js';

/**
 * Issue 4, acceptance 4: provider 5xx and timeouts → retries with backoff up to the limit, then
 * the SMS fallback; the metrics count it.
 *
 * - `…1004`: the simulator answers 503 to every WhatsApp call → 3 attempts, then SMS (reason `failed`);
 * - `…1005`: 503 twice, then 200 → delivered on the third attempt, no SMS;
 * - timeout: the proxy swallows the WhatsApp call and only drops the connection after
 *   `YCLOUD_TIMEOUT_MS` + 700 ms, so every attempt times out in our adapter → 3 attempts, then SMS;
 * - `…1009`: 429 → a rate-limited WhatsApp with a next channel falls back at once (reason `rejected`);
 * - late SMS answer: `…1003` (not on WhatsApp → SMS at once), and the proxy holds the SMS answer
 *   past `YCLOUD_TIMEOUT_MS` although the simulator took the message, with its receipts lost: the
 *   retry finds the SMS in YCloud's records (`GET /v2/sms`) and does not send it again.
 *
 * All roles run in one `main.ts` process here: it is the only layout in which one `/metrics`
 * shows the worker's counters (see the todo in worker-kill.test.ts).
 */

const POLICY = fileURLToPath(new URL('./chaos.policy.yaml', import.meta.url));
const PROVIDER_TIMEOUT_MS = 1000;
const EACH = 5;

type Kind = 'unavailable' | 'flaky' | 'timeout' | 'rate_limited' | 'sms_late_answer';

describe('chaos 4: provider 500s and timeouts', { timeout: 90_000 }, () => {
  let kurir: ChaosKurir;
  const next = numberFactory();
  const timeoutNumbers = new Set<string>();
  const lateSmsNumbers = new Set<string>();
  const cases: { kind: Kind; to: string; id: string }[] = [];
  let before0 = '';
  let after0 = '';

  before(async () => {
    kurir = await startChaosKurir({
      embedded: true,
      env: { KURIR_POLICY_FILE: POLICY, YCLOUD_TIMEOUT_MS: String(PROVIDER_TIMEOUT_MS), KURIR_DELIVERY_TIMEOUT_SECONDS: '5' },
      proxy: {
        blackholeMs: ({ path, to }) => (path.includes('/whatsapp/') && to !== undefined && timeoutNumbers.has(to) ? PROVIDER_TIMEOUT_MS + 700 : undefined),
        answerDelayMs: ({ path, to }) => (path === '/v2/sms' && to !== undefined && lateSmsNumbers.has(to) ? PROVIDER_TIMEOUT_MS + 500 : 0),
      },
      muteReceipts: ({ to }) => to !== undefined && lateSmsNumbers.has(to),
    });
    const planned: { kind: Kind; to: string }[] = [];
    for (let i = 0; i < EACH; i += 1) {
      const slow = next();
      timeoutNumbers.add(slow);
      const lateSms = next('1003');
      lateSmsNumbers.add(lateSms);
      planned.push(
        { kind: 'unavailable', to: next('1004') },
        { kind: 'flaky', to: next('1005') },
        { kind: 'timeout', to: slow },
        { kind: 'rate_limited', to: next('1009') },
        { kind: 'sms_late_answer', to: lateSms },
      );
    }
    before0 = await kurir.metrics();
    await pooled(planned, 10, async (plan) => {
      const reply = await kurir.create({ to: plan.to, purpose: 'login' });
      assert.equal(reply.status, 202, JSON.stringify(reply.body));
      cases.push({ ...plan, id: reply.id ?? '' });
    });
    await kurir.waitSettled({ timeoutMs: 60_000, quietMs: 1500 });
    after0 = await kurir.metrics();
  });

  after(async () => {
    await kurir?.close();
  });

  const whatsappCalls = (id: string) => kurir.simulator.messages().filter((m) => m.externalId === `${id}-1` && m.channel === 'whatsapp');
  const smsAccepted = (id: string) => kurir.simulator.messages().filter((m) => m.externalId === `${id}-2` && m.channel === 'sms' && m.httpStatus === 200);
  const gapsOf = (times: number[]) => times.slice(1).map((at, i) => at - (times[i] ?? at));

  async function deliveries(id: string): Promise<Record<string, unknown>[]> {
    const reply = await kurir.get(id);
    assert.equal(reply.status, 200);
    return reply.body.deliveries as Record<string, unknown>[];
  }

  test('503 on every call (…1004): 3 attempts with growing backoff, then one SMS with the same code', async (t) => {
    const gaps: number[][] = [];
    for (const c of cases.filter((c) => c.kind === 'unavailable')) {
      const calls = whatsappCalls(c.id);
      assert.deepEqual(calls.map((m) => m.httpStatus), [503, 503, 503], c.id);
      const gap = gapsOf(calls.map((m) => m.receivedAt));
      gaps.push(gap);
      // exponential 500 ms with jitter 0.5: the 1st retry waits 250–500 ms, the 2nd 500–1000 ms.
      assert.ok((gap[0] ?? 0) >= 200 && (gap[1] ?? 0) >= 450, `backoff too short: ${JSON.stringify(gap)}`);
      const sms = smsAccepted(c.id);
      assert.equal(sms.length, 1);
      assert.equal(sms[0]?.code, calls[0]?.code, 'the fallback resends the same code');
      const [first, second] = await deliveries(c.id);
      assert.equal(first?.status, 'failed');
      assert.equal(second?.reason, 'failed');
    }
    t.diagnostic(`…1004 retry gaps (ms): ${JSON.stringify(gaps)}`);
  });

  test('503 twice, then 200 (…1005): delivered on the 3rd attempt, no SMS', async () => {
    for (const c of cases.filter((c) => c.kind === 'flaky')) {
      assert.deepEqual(whatsappCalls(c.id).map((m) => m.httpStatus), [503, 503, 200], c.id);
      assert.equal(smsAccepted(c.id).length, 0);
      const [first] = await deliveries(c.id);
      assert.equal(first?.status, 'delivered');
    }
  });

  test(`provider timeout (held ${PROVIDER_TIMEOUT_MS + 700} ms, YCLOUD_TIMEOUT_MS=${PROVIDER_TIMEOUT_MS}): 3 attempts, then SMS`, async (t) => {
    const spacing: number[][] = [];
    for (const c of cases.filter((c) => c.kind === 'timeout')) {
      const held = (kurir.proxy?.calls() ?? []).filter((call) => call.externalId === `${c.id}-1`);
      assert.equal(held.length, 3, c.id);
      assert.ok(held.every((call) => call.fate === 'blackholed'));
      const gap = gapsOf(held.map((call) => call.at));
      spacing.push(gap);
      // Each attempt ran into the adapter's deadline (the proxy's own timestamps jitter by a few hundred ms on a busy box).
      assert.ok(gap.every((g) => g >= PROVIDER_TIMEOUT_MS * 0.8), `attempts closer than the timeout: ${JSON.stringify(gap)}`);
      assert.equal(whatsappCalls(c.id).length, 0, 'a swallowed call must not reach the simulator');
      assert.equal(smsAccepted(c.id).length, 1);
      const [first, second] = await deliveries(c.id);
      assert.equal(first?.status, 'failed');
      assert.equal(first?.errorCode, 'timeout');
      assert.equal(second?.reason, 'failed');
    }
    t.diagnostic(`timeout attempt spacing (ms): ${JSON.stringify(spacing)}`);
  });

  test('429 (…1009) with a next channel: no retry, SMS at once', async () => {
    for (const c of cases.filter((c) => c.kind === 'rate_limited')) {
      assert.deepEqual(whatsappCalls(c.id).map((m) => m.httpStatus), [429], c.id);
      assert.equal(smsAccepted(c.id).length, 1);
      const [, second] = await deliveries(c.id);
      assert.equal(second?.reason, 'rejected');
    }
  });

  test(`an SMS accepted but answered after YCLOUD_TIMEOUT_MS, receipts lost: found by lookup on the retry, sent once`, async () => {
    for (const c of cases.filter((c) => c.kind === 'sms_late_answer')) {
      assert.equal(smsAccepted(c.id).length, 1, `${c.id}: SMS sent ${smsAccepted(c.id).length} times`);
      const posts = (kurir.proxy?.calls() ?? []).filter((call) => call.method === 'POST' && call.externalId === `${c.id}-2`);
      assert.equal(posts.length, 1, 'the retry must not post the SMS again');
      const [, second] = await deliveries(c.id);
      assert.equal(second?.channel, 'sms');
      // Adopted from the provider's record, whose status followed the (lost) receipts.
      assert.ok(['accepted', 'sent', 'delivered'].includes(String(second?.status)), JSON.stringify(second));
    }
    const lookups = (kurir.proxy?.calls() ?? []).filter((call) => call.method === 'GET' && call.path.startsWith('/v2/sms'));
    assert.ok(lookups.length >= EACH, `only ${lookups.length} lookups`);
    const delta = metricValue(after0, 'kurir_sends_in_doubt_total', { channel: 'sms', cause: 'provider_timeout', resolution: 'found' }) -
      metricValue(before0, 'kurir_sends_in_doubt_total', { channel: 'sms', cause: 'provider_timeout', resolution: 'found' });
    assert.equal(delta, EACH);
  });

  test('/metrics counted every retry, every final failure and every fallback', (t) => {
    const delta = (name: string, labels: Record<string, string>) => metricValue(after0, name, labels) - metricValue(before0, name, labels);
    const moved = {
      retry: delta('kurir_messages_sent_total', { channel: 'whatsapp', result: 'retry' }),
      failed: delta('kurir_messages_sent_total', { channel: 'whatsapp', result: 'failed' }),
      fallbackFailed: delta('kurir_fallbacks_total', { from: 'whatsapp', to: 'sms', reason: 'failed' }),
      fallbackRejected: delta('kurir_fallbacks_total', { from: 'whatsapp', to: 'sms', reason: 'rejected' }),
      smsAccepted: delta('kurir_messages_sent_total', { channel: 'sms', result: 'accepted' }),
    };
    t.diagnostic(`metric deltas: ${JSON.stringify(moved)}`);
    assert.deepEqual(moved, {
      // 2 retries each for …1004, …1005 and the timeouts; the 3rd attempt is final (or succeeds).
      retry: 3 * EACH * 2,
      // Final failures: …1004, the timeouts, …1009 and …1003.
      failed: 4 * EACH,
      fallbackFailed: 2 * EACH,
      // …1009's 429 and …1003's 131026.
      fallbackRejected: 2 * EACH,
      // The late SMS counts once, when the lookup found it.
      smsAccepted: 4 * EACH,
    });
  });
});
