import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { socketPortsOf, type ProxiedCall } from '../helpers/chaos/provider-proxy.js';
import { acceptedByExternalId, metricValue, numberFactory, paced, startChaosKurir, type ChaosKurir, type CreateReply } from '../helpers/chaos/cluster.js';

/**
 * Issue 4, acceptance 1: `kill -9` of worker processes in the middle of sends, with 3 workers.
 *
 * The provider proxy holds every answer 300 ms after the simulator has recorded (and so "sent")
 * the message: most in-flight sends at the moment of a kill are in the crash window — the
 * provider has the message, Kurir's state still says `sending`. BullMQ hands such a job out again
 * once its lock expires and a stalled-job check runs (30–60 s: lockDuration and stalledInterval
 * are 30 s). A receipt that arrived in between has moved the delivery on, so nothing is sent; for
 * a third of the numbers the receipts are swallowed on their way to the API, which leaves the
 * delivery in doubt: an SMS is looked up at the provider (`GET /v2/sms`) and not sent again when
 * found, a WhatsApp message (no lookup exists) moves on to SMS instead of being sent twice.
 * Reconciled against the simulator's own log of provider calls, which lives in this process.
 */

const POLICY = fileURLToPath(new URL('./chaos.policy.yaml', import.meta.url));
const VERIFICATIONS = 300;
const RATE_PER_SECOND = 30;
const KILLS = 5;
const ANSWER_HOLD_MS = 300;
/** How long after its answer a worker may still be on its way to MARK_SENT (event loop, one Redis round trip, a busy 2-CPU box). */
const WORKER_GAP_MS = 250;
/** YCLOUD_TIMEOUT_MS, left at its default here. */
const DEFAULT_PROVIDER_TIMEOUT_MS = 8000;

interface Kill {
  atMs: number;
  worker: string;
  /** Local ports of the victim's sockets: which proxied calls were its own. */
  ports: Set<number>;
  at: number;
  plannedMs: number;
}

describe('chaos 1: kill -9 of worker processes mid-send (3 workers)', { timeout: 150_000 }, () => {
  let kurir: ChaosKurir;
  const muted = new Set<string>();
  const replies: { to: string; reply: CreateReply }[] = [];
  const kills: Kill[] = [];
  let settleMs = 0;
  let loadStartedAt = 0;
  /** Which worker process owned a local port (sampled), to attribute provider calls. */
  const portOwner = new Map<number, string>();
  let sampler: NodeJS.Timeout | undefined;

  before(async () => {
    kurir = await startChaosKurir({
      workers: 3,
      receiptDelayMs: 100,
      env: { KURIR_POLICY_FILE: POLICY, KURIR_DELIVERY_TIMEOUT_SECONDS: '5' },
      proxy: { answerDelayMs: () => ANSWER_HOLD_MS },
      muteReceipts: ({ to }) => to !== undefined && muted.has(to),
    });
    const next = numberFactory();
    const numbers = Array.from({ length: VERIFICATIONS }, (_, i) => {
      const to = next();
      if (i % 3 === 0) muted.add(to);
      return to;
    });

    const loadMs = (VERIFICATIONS / RATE_PER_SECOND) * 1000;
    // Random kill points inside the load, at least 700 ms apart so each lands on a fresh worker set.
    const offsets: number[] = [];
    while (offsets.length < KILLS) {
      const candidate = 800 + randomInt(Math.max(1, Math.round(loadMs) - 1600));
      if (offsets.every((o) => Math.abs(o - candidate) >= 700)) offsets.push(candidate);
    }
    offsets.sort((a, b) => a - b);
    const spawnedAt = new Map(kurir.workers.map((w) => [w, 0]));
    sampler = setInterval(() => {
      for (const worker of kurir.workers) {
        if (!worker.running || worker.child.pid === undefined) continue;
        for (const port of socketPortsOf(worker.child.pid)) if (!portOwner.has(port)) portOwner.set(port, worker.name);
      }
    }, 200);
    const started = Date.now();
    loadStartedAt = started;
    const killer = (async () => {
      for (const offset of offsets) {
        while (Date.now() - started < offset) await new Promise((resolve) => setTimeout(resolve, 5));
        // A victim that is already at work: a respawned process needs a few seconds to start.
        const eligible = () => kurir.workers.filter((w) => w.running && Date.now() - (spawnedAt.get(w) ?? 0) >= 3000);
        while (eligible().length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
        const alive = eligible();
        const victim = alive[randomInt(alive.length)];
        if (victim === undefined) continue;
        const ports = socketPortsOf(victim.child.pid ?? 0);
        const at = Date.now();
        victim.signal('SIGKILL');
        kills.push({ atMs: at - started, plannedMs: offset, worker: victim.name, ports, at });
        await victim.waitForExit(5000);
        // Respawned at once, as a supervisor would; it registers while the load goes on.
        spawnedAt.set(await kurir.spawnWorker(), Date.now());
      }
    })();
    const results = await paced(VERIFICATIONS, RATE_PER_SECOND, 100, async (i) => {
      const to = numbers[i] as string;
      const reply = await kurir.create({ to, purpose: 'login' });
      replies.push({ to, reply });
      return reply;
    });
    await killer;
    assert.equal(results.length, VERIFICATIONS);
    // Killed jobs come back only after their lock expired and a stalled check ran (≤ ~60 s).
    settleMs = await kurir.waitSettled({ timeoutMs: 110_000, quietMs: 2000 });
    clearInterval(sampler);
  });

  after(async () => {
    clearInterval(sampler);
    await kurir?.close();
  });

  test('every create was accepted', () => {
    const refused = replies.filter((r) => r.reply.status !== 202);
    assert.equal(refused.length, 0, JSON.stringify(refused.slice(0, 3)));
  });

  test('every accepted verification reached the provider at least once (simulator log)', (t) => {
    const accepted = acceptedByExternalId(kurir.simulator);
    const lost = replies.filter((r) => r.reply.id !== undefined && ![...accepted.keys()].some((externalId) => externalId.startsWith(`${r.reply.id}-`)));
    t.diagnostic(`kills: ${JSON.stringify(kills.map((k) => ({ atMs: k.atMs, plannedMs: k.plannedMs, worker: k.worker })))}; settled ${settleMs} ms after the load`);
    t.diagnostic(`lost: ${lost.length} of ${replies.length}`);
    assert.equal(lost.length, 0, `never sent: ${lost.slice(0, 5).map((r) => r.reply.id).join(', ')}\n${kurir.transcripts()}`);
  });

  test('no process died except those the test killed', () => {
    const killed = new Set(kills.map((kill) => kill.worker));
    const died = [kurir.api, kurir.scheduler, ...kurir.workers].filter((p) => p !== undefined && !p.running && !killed.has(p.name));
    assert.deepEqual(died.map((p) => p?.transcript(15)), []);
  });

  test('no delivery is left queued, retrying or sending, and no send job failed', async () => {
    const stuck = (await kurir.verifications()).flatMap((v) =>
      v.deliveries.filter((d) => ['queued', 'retrying', 'sending'].includes(d.status)).map((d) => `${v.id}-${d.n}:${d.status}`),
    );
    assert.deepEqual(stuck, []);
    const counts = await kurir.counts();
    assert.equal(counts['send-whatsapp'].failed ?? 0, 0, JSON.stringify(counts));
    assert.equal(counts['send-sms'].failed ?? 0, 0, JSON.stringify(counts));
  });

  test('duplicates: none where a receipt came back in time; each one explained by a kill mid-call or a provider slower than its deadline', (t) => {
    const accepted = acceptedByExternalId(kurir.simulator);
    // Who made each call: the worker that owned the caller's TCP port (sampled every 200 ms,
    // and read from the victim at the instant of each kill).
    const ownerOf = (call: ProxiedCall): string | undefined =>
      call.callerPort === undefined ? undefined : (kills.find((kill) => kill.ports.has(call.callerPort ?? 0))?.worker ?? portOwner.get(call.callerPort));
    const killedAt = new Map(kills.map((kill) => [kill.worker, kill.at]));
    // The crash window: the provider took the message and its caller was killed before MARK_SENT —
    // the call was still open at the kill, or answered so shortly before it that the script
    // cannot have reached Redis (WORKER_GAP_MS). The proxy's own timestamps lag on a loaded box,
    // so a call is attributed by its caller, not by when the proxy read it.
    const inWindow = (call: ProxiedCall) => {
      const killed = killedAt.get(ownerOf(call) ?? '');
      return call.upstreamStatus === 200 && killed !== undefined && (call.endedAt ?? Infinity) >= killed - WORKER_GAP_MS;
    };
    // The other window: the provider took the message but answered after the adapter's deadline
    // (YCLOUD_TIMEOUT_MS, 8 s by default) — a live caller gave up and BullMQ retried it.
    const providerTooSlow = (call: ProxiedCall) =>
      call.upstreamStatus === 200 &&
      !inWindow(call) &&
      (call.fate === 'caller_gone' || (call.upstreamAt ?? 0) - call.at >= DEFAULT_PROVIDER_TIMEOUT_MS - 1000);
    // Sends only: the GETs are Kurir's lookups of SMS it was unsure about.
    const calls = (kurir.proxy?.calls() ?? []).filter((call) => call.method === 'POST');
    const cutOff = new Set(calls.filter(inWindow).map((call) => call.externalId));
    const slow = new Set(calls.filter(providerTooSlow).map((call) => call.externalId));
    const perKill = kills.map((kill) => `${kill.worker}@${kill.atMs}ms: ${calls.filter((call) => ownerOf(call) === kill.worker && (call.endedAt ?? Infinity) >= kill.at).length} open`);
    const openAtKill = calls.filter((call) => {
      const killed = killedAt.get(ownerOf(call) ?? '');
      return killed !== undefined && (call.endedAt ?? Infinity) >= killed;
    }).length;
    const mutedIds = new Set(replies.filter((r) => muted.has(r.to)).map((r) => r.reply.id));
    const duplicates = [...accepted.entries()].filter(([, times]) => times.length > 1);
    const isMuted = (externalId: string) => mutedIds.has(externalId.slice(0, externalId.lastIndexOf('-')));
    const byTimeout = duplicates.filter(([externalId]) => !cutOff.has(externalId) && slow.has(externalId));
    const withReceipts = duplicates.filter(([externalId]) => !isMuted(externalId) && !slow.has(externalId));
    const withoutReceipts = duplicates.filter(([externalId]) => isMuted(externalId));
    const unexplained = duplicates.filter(([externalId]) => !cutOff.has(externalId) && !slow.has(externalId));
    const gaps = duplicates.map(([, times]) => Math.round(((times[1] ?? 0) - (times[0] ?? 0)) / 100) / 10);
    t.diagnostic(
      `victims' provider calls open at a kill: ${openAtKill} (${perKill.join(', ')}); in the crash window (accepted by the provider, open at the kill or answered ≤ ${WORKER_GAP_MS} ms before it): ${cutOff.size} (receipts lost for ${[...cutOff].filter((id) => id !== undefined && isMuted(id)).length} of them); ` +
        `deliveries sent twice: ${duplicates.length} (receipts lost: ${withoutReceipts.length}, receipts kept: ${duplicates.length - withoutReceipts.length}; ` +
        `caused by a provider answer slower than the adapter's deadline: ${byTimeout.length}); ` +
        `re-send came ${JSON.stringify(gaps)} s after the first send`,
    );
    for (const [externalId] of unexplained) {
      const mine = calls.filter((call) => call.externalId === externalId);
      t.diagnostic(`unexplained ${externalId}: ${JSON.stringify(mine.map((c) => ({ fate: c.fate, port: c.callerPort, owner: ownerOf(c) ?? '?', at: c.at - loadStartedAt, up: (c.upstreamAt ?? 0) - loadStartedAt, end: (c.endedAt ?? 0) - loadStartedAt })))}`);
    }
    assert.deepEqual(withReceipts.map(([id]) => id), [], 'a receipt had moved the delivery on, yet it was sent again (and no provider timeout explains it)');
    const crashDuplicates = duplicates.filter(([externalId]) => cutOff.has(externalId));
    assert.deepEqual(crashDuplicates.map(([id]) => id), [], 'a delivery whose answer a kill cut off was sent again');
    // A re-send repeats the same code: the user gets a second copy, never a second, different code.
    for (const [externalId] of duplicates) {
      const codes = new Set(kurir.simulator.messages().filter((m) => m.externalId === externalId && m.httpStatus === 200).map((m) => m.code));
      assert.equal(codes.size, 1, `${externalId} was sent with different codes`);
    }
    assert.deepEqual(unexplained.map(([id]) => id), [], 'sent twice although no kill cut its answer off');
    assert.ok(kills.length >= 4, `only ${kills.length} kills happened`);
  });

  test('the send counters of the worker processes can be scraped, in-doubt sends included', async (t) => {
    // Each worker serves its own METRICS_PORT; a killed worker's counters die with it (Prometheus
    // sees a counter reset), so only the survivors and respawns are summed.
    const scrapes = await kurir.workerMetrics();
    assert.ok(scrapes.length >= 3, `only ${scrapes.length} workers answered /metrics`);
    const sum = (name: string, labels: Record<string, string> = {}) => scrapes.reduce((total, text) => total + metricValue(text, name, labels), 0);
    assert.ok(sum('kurir_messages_sent_total', { result: 'accepted' }) > 0, 'no worker reports accepted sends');
    const inDoubt = ['found', 'absent', 'fell_back', 'resent'].map((resolution) => `${resolution}=${sum('kurir_sends_in_doubt_total', { resolution })}`);
    t.diagnostic(`running workers' in-doubt sends: ${inDoubt.join(', ')}`);
  });
});
