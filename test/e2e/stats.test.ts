import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { problemMiddleware } from '../../api/problem.js';
import { QUEUE_DASHBOARD_PATH, createQueueDashboard } from '../../api/queue-dashboard.js';
import { DEFAULT_POLICY } from '../../common/config/policy.js';
import { measureSms } from '../../common/messages/sms-encoding.js';
import { DELIVERY_LATENCY_BUCKETS, TIME_TO_VERIFY_BUCKETS, createMetrics } from '../../common/observability/metrics.js';
import { serveMetrics, startMetricsServer } from '../../common/runtime/metrics-server.js';
import { bucketIndex } from '../../common/stats/histogram.js';
import { magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';
import { ProcessGroup, freePort, poll } from '../helpers/processes.js';
import { TEST_REDIS_URL, deletePrefix, freshPrefix } from '../helpers/redis.js';
import { Redis } from 'ioredis';
import { pino } from 'pino';

/**
 * Observability end to end: a scenario of known outcomes runs through the whole pipeline (API,
 * workers, scheduler, simulator over real HTTP and Redis), then `/v1/stats` must report exactly
 * those numbers — counts, rates, cost from the default price table, percentiles within their
 * bucket — and `/metrics` must have moved the same way. Also: the queue dashboard behind the
 * admin token, and the metrics port of the worker and scheduler processes.
 *
 * The scenario (tenant acme, Indonesian numbers unless said):
 * - A: 3 × WhatsApp delivered, approved;
 * - B: WhatsApp `failed` receipt → SMS (fallback `failed`), delivered, approved;
 * - C: WhatsApp never delivered → SMS after the 1 s timeout (fallback `timeout`), approved;
 * - D: SMS only (channel pinned), `undelivered`: never delivered, left pending;
 * - E: an email, delivered, approved;
 * - F: WhatsApp delivered, then 5 wrong codes: max_attempts.
 */

const ADMIN_TOKEN = 'kurir-admin-token-for-stats-e2e-0123456789abc';
const PRICES = DEFAULT_POLICY.prices;

let k: KurirHarness;

interface Outcome {
  id: string;
  /** Seconds from provider acceptance to delivered, of each delivery that was delivered. */
  deliverLatencies: number[];
  /** Seconds from create to approval, when approved. */
  verifyLatency: number | undefined;
}

/** Texts of the SMS the simulator received, to price them by segment. */
const smsTexts: string[] = [];
const outcomes: Record<string, Outcome[]> = {};

async function check(id: string, code: string): Promise<string> {
  const reply = await k.request('POST', `/v1/verifications/${id}/check`, { body: { code } });
  assert.equal(reply.status, 200, reply.text);
  return String(reply.body.status);
}

async function create(to: string, extra: Record<string, unknown> = {}): Promise<string> {
  const reply = await k.create({ to, purpose: 'login', ...extra });
  assert.equal(reply.status, 202, reply.text);
  return String(reply.body.id);
}

/** Latencies as the store recorded them, from the public view. */
async function outcome(id: string): Promise<Outcome> {
  const { raw } = await k.get(id);
  const body = raw.body as { createdAt: string; approvedAt: string | null; deliveries: { sentAt: string | null; deliveredAt: string | null }[] };
  return {
    id,
    deliverLatencies: body.deliveries.flatMap((d) =>
      d.sentAt !== null && d.deliveredAt !== null ? [Math.max(0, (Date.parse(d.deliveredAt) - Date.parse(d.sentAt)) / 1000)] : [],
    ),
    verifyLatency: body.approvedAt === null ? undefined : (Date.parse(body.approvedAt) - Date.parse(body.createdAt)) / 1000,
  };
}

async function deliveredAndApproved(to: string, channel: 'whatsapp' | 'sms' | 'email', deliveryIndex: number, extra: Record<string, unknown> = {}): Promise<Outcome> {
  const id = await create(to, extra);
  const message = await k.simulator.waitForMessage((m) => m.to === to && m.channel === channel && m.externalId === `${id}-${deliveryIndex + 1}`, 5000);
  if (channel === 'sms') smsTexts.push(message.text ?? '');
  await k.waitFor(id, (v) => v.deliveries[deliveryIndex]?.status === 'delivered', 6000);
  assert.equal(await check(id, message.code ?? ''), 'approved');
  return await outcome(id);
}

async function runScenario(): Promise<void> {
  const a = await Promise.all([0, 1, 2].map(() => deliveredAndApproved(magicNumber('0000'), 'whatsapp', 0)));
  const [b, c, e] = await Promise.all([
    deliveredAndApproved(magicNumber('1001'), 'sms', 1),
    deliveredAndApproved(magicNumber('1002'), 'sms', 1),
    deliveredAndApproved(`stats.${randomBytes(4).toString('hex')}@example.com`, 'email', 0),
  ]);
  const dTo = magicNumber('2001');
  const d = await create(dTo, { channel: 'sms' });
  smsTexts.push((await k.simulator.waitForMessage((m) => m.to === dTo && m.channel === 'sms', 5000)).text ?? '');
  await k.waitFor(d, (v) => v.deliveries[0]?.status === 'failed', 5000);

  const fTo = magicNumber('0000');
  const f = await create(fTo);
  const fCode = (await k.simulator.waitForMessage((m) => m.to === fTo && m.channel === 'whatsapp', 5000)).code ?? '';
  await k.waitFor(f, (v) => v.deliveries[0]?.status === 'delivered');
  const wrong = fCode === '000000' ? '111111' : '000000';
  for (let i = 0; i < 5; i += 1) await check(f, wrong);
  assert.equal((await k.get(f)).status, 'max_attempts');

  Object.assign(outcomes, { a, b: [b], c: [c], d: [await outcome(d)], e: [e], f: [await outcome(f)] });
}

type Stats = {
  from: string;
  to: string;
  filters: { country: string | null; channel: string | null };
  created: number;
  approved: number;
  expired: number;
  maxAttempts: number;
  conversion: number | null;
  deliveries: { sent: number; delivered: number; deliveryRate: number | null };
  fallbacks: { count: number; rate: number | null };
  timeToDeliver: { p50: number | null; p95: number | null };
  timeToVerify: { p50: number | null; p95: number | null };
  cost: { total: number; currency: string; perApproved: number | null };
};

async function stats(query = '', tenant: 'acme' | 'beta' = 'acme'): Promise<Stats> {
  const reply = await k.request('GET', `/v1/stats${query === '' ? '' : `?${query}`}`, { tenant });
  assert.equal(reply.status, 200, reply.text);
  return reply.body as unknown as Stats;
}

const micros = (amount: number) => Math.round(amount * 1_000_000);
const smsMicros = () => smsTexts.reduce((sum, text) => sum + measureSms(text).segments * micros(PRICES.sms.byCountry.ID ?? 0), 0);
const WHATSAPP_ID = micros(PRICES.whatsapp.byCountry.ID ?? 0);
const EMAIL = micros(PRICES.email.default);

/** The nearest-rank percentile of the samples, and the bucket it falls in. */
function bucketOf(bounds: readonly number[], samples: number[], q: number): { lower: number; upper: number } {
  const sorted = [...samples].sort((x, y) => x - y);
  const truth = sorted[Math.ceil(q * sorted.length) - 1] ?? Number.NaN;
  const index = bucketIndex(bounds, truth);
  return { lower: index === 0 ? 0 : (bounds[index - 1] ?? 0), upper: bounds[index] ?? (bounds.at(-1) ?? 0) };
}

function assertInBucket(estimate: number | null, bucket: { lower: number; upper: number }, label: string): void {
  assert.ok(estimate !== null && estimate >= bucket.lower && estimate <= bucket.upper, `${label}: ${estimate} not in [${bucket.lower}, ${bucket.upper}]`);
}

/** Prometheus text → the summed value of every series of `name` whose labels include `labels`. */
function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const seen = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]));
    if (Object.entries(labels).every(([key, value]) => seen[key] === value)) sum += Number(match[3]);
  }
  return sum;
}

before(async () => {
  k = await startKurir({ KURIR_ADMIN_TOKEN: ADMIN_TOKEN });
  await runScenario();
  // Every process writes its counts in batches (≤ 250 ms) and the receipts record right after the
  // status they apply is visible: wait until the last of the scenario's events is counted.
  await poll(async () => {
    const current = await stats();
    const whole = current.created === 8 && current.approved === 6 && current.maxAttempts === 1 && current.deliveries.sent === 10;
    return whole && current.deliveries.delivered === 7 && current.fallbacks.count === 2 ? current : undefined;
  }, { timeoutMs: 5000, what: 'the stats to see the whole scenario' });
});
after(async () => {
  await k.close();
});

describe('/v1/stats agrees with the scenario', () => {
  test('totals, rates, cost and percentiles (default window: the last hour)', async () => {
    const all = await stats();
    const costMicros = 4 * WHATSAPP_ID + smsMicros() + EMAIL;
    assert.equal(smsTexts.length, 3);
    assert.deepEqual(
      { ...all, timeToDeliver: undefined, timeToVerify: undefined, from: undefined, to: undefined },
      {
        from: undefined,
        to: undefined,
        filters: { country: null, channel: null },
        created: 8,
        approved: 6,
        expired: 0,
        maxAttempts: 1,
        conversion: 6 / 8,
        deliveries: { sent: 10, delivered: 7, deliveryRate: 7 / 10 },
        fallbacks: { count: 2, rate: 2 / 8 },
        timeToDeliver: undefined,
        timeToVerify: undefined,
        cost: { total: costMicros / 1e6, currency: 'USD', perApproved: Math.round(costMicros / 6) / 1e6 },
      },
    );
    const to = Date.parse(all.to);
    assert.equal(to % 60_000, 0);
    assert.ok(to >= Date.now() - 1000 && to <= Date.now() + 60_000, all.to);
    assert.equal(to - Date.parse(all.from), 61 * 60_000, 'the last hour, widened to whole minutes');

    const deliverSamples = Object.values(outcomes).flat().flatMap((o) => o.deliverLatencies);
    const verifySamples = Object.values(outcomes).flat().flatMap((o) => (o.verifyLatency === undefined ? [] : [o.verifyLatency]));
    assert.equal(deliverSamples.length, 7);
    assert.equal(verifySamples.length, 6);
    for (const q of [0.5, 0.95] as const) {
      const key = q === 0.5 ? 'p50' : 'p95';
      assertInBucket(all.timeToDeliver[key], bucketOf(DELIVERY_LATENCY_BUCKETS, deliverSamples, q), `timeToDeliver.${key}`);
      assertInBucket(all.timeToVerify[key], bucketOf(TIME_TO_VERIFY_BUCKETS, verifySamples, q), `timeToVerify.${key}`);
    }
  });

  test('by channel: created by first channel, sends, deliveries and cost by message, fallbacks by the channel left, approvals by the last delivery', async () => {
    const whatsapp = await stats('channel=whatsapp');
    assert.deepEqual(
      [whatsapp.created, whatsapp.approved, whatsapp.maxAttempts, whatsapp.deliveries, whatsapp.fallbacks.count, whatsapp.cost.total],
      [6, 3, 1, { sent: 6, delivered: 4, deliveryRate: 4 / 6 }, 2, (4 * WHATSAPP_ID) / 1e6],
    );
    const sms = await stats('channel=sms');
    assert.deepEqual(
      [sms.created, sms.approved, sms.conversion, sms.deliveries, sms.fallbacks.count, sms.cost.total],
      [1, 2, 2, { sent: 3, delivered: 2, deliveryRate: 2 / 3 }, 0, smsMicros() / 1e6],
    );
    const email = await stats('channel=email');
    assert.deepEqual([email.created, email.approved, email.deliveries.sent, email.deliveries.delivered, email.cost.total], [1, 1, 1, 1, EMAIL / 1e6]);
    assert.deepEqual(email.filters, { country: null, channel: 'email' });
  });

  test('by country: phone numbers under their country, email under ZZ; filters combine', async () => {
    const indonesia = await stats('country=id');
    assert.deepEqual(indonesia.filters, { country: 'ID', channel: null });
    assert.deepEqual(
      [indonesia.created, indonesia.approved, indonesia.deliveries.sent, indonesia.deliveries.delivered, indonesia.fallbacks.count, indonesia.cost.total],
      [7, 5, 9, 6, 2, (4 * WHATSAPP_ID + smsMicros()) / 1e6],
    );
    const unknown = await stats('country=ZZ');
    assert.deepEqual([unknown.created, unknown.approved, unknown.deliveries.delivered, unknown.cost.total], [1, 1, 1, EMAIL / 1e6]);
    const none = await stats('country=ID&channel=email');
    assert.deepEqual([none.created, none.approved, none.deliveries.sent, none.cost.total, none.conversion], [0, 0, 0, 0, null]);
    assert.deepEqual(none.timeToDeliver, { p50: null, p95: null });
  });

  test('another tenant sees none of it; an earlier window is empty', async () => {
    const beta = await stats('', 'beta');
    assert.deepEqual([beta.created, beta.approved, beta.deliveries.sent, beta.fallbacks.count, beta.cost.total], [0, 0, 0, 0, 0]);
    const earlier = await stats(`from=${encodeURIComponent(new Date(Date.now() - 3 * 3_600_000).toISOString())}&to=${encodeURIComponent(new Date(Date.now() - 2 * 3_600_000).toISOString())}`);
    assert.equal(earlier.created, 0);
  });

  test('window rules: from before to, at most 7 days', async () => {
    const now = Date.now();
    for (const query of [
      `from=${encodeURIComponent(new Date(now).toISOString())}&to=${encodeURIComponent(new Date(now - 1000).toISOString())}`,
      `from=${encodeURIComponent(new Date(now - 8 * 86_400_000).toISOString())}`,
      'from=2025-13-01T00:00:00Z',
      'channel=telegram',
      'country=IDN',
    ]) {
      const reply = await k.request('GET', `/v1/stats?${query}`);
      assert.equal(reply.status, 400, `${query}: ${reply.text}`);
      assert.equal(reply.body.code, 'validation_failed');
    }
    const week = await k.request('GET', `/v1/stats?from=${encodeURIComponent(new Date(now - 7 * 86_400_000).toISOString())}&to=${encodeURIComponent(new Date(now).toISOString())}`);
    assert.equal(week.status, 200, week.text);
    assert.equal(week.body.created, 8);
  });
});

describe('/metrics moved with the scenario', () => {
  test('fallbacks by reason, deliveries, approvals with their time to verify, cost per channel and country', async () => {
    const reply = await k.request('GET', '/metrics', { tenant: null });
    assert.equal(reply.status, 200);
    const text = reply.text;
    assert.equal(metricValue(text, 'kurir_fallbacks_total', { from: 'whatsapp', to: 'sms', reason: 'failed' }), 1);
    assert.equal(metricValue(text, 'kurir_fallbacks_total', { from: 'whatsapp', to: 'sms', reason: 'timeout' }), 1);
    assert.equal(metricValue(text, 'kurir_fallbacks_total'), 2);
    assert.equal(metricValue(text, 'kurir_receipts_total', { channel: 'whatsapp', status: 'delivered' }), 4);
    assert.equal(metricValue(text, 'kurir_delivery_latency_seconds_count', { channel: 'whatsapp', country: 'ID' }), 4);
    assert.equal(metricValue(text, 'kurir_delivery_latency_seconds_count'), 7);
    assert.equal(metricValue(text, 'kurir_verifications_ended_total', { tenant: 'acme', status: 'approved' }), 6);
    assert.equal(metricValue(text, 'kurir_verifications_ended_total', { tenant: 'acme', status: 'max_attempts' }), 1);
    assert.equal(metricValue(text, 'kurir_time_to_verify_seconds_count', { channel: 'whatsapp', purpose: 'login' }), 3);
    assert.equal(metricValue(text, 'kurir_time_to_verify_seconds_count', { channel: 'sms' }), 2);
    assert.equal(metricValue(text, 'kurir_time_to_verify_seconds_count', { channel: 'email' }), 1);

    const near = (actual: number, expected: number, label: string) => assert.ok(Math.abs(actual - expected) < 1e-9, `${label}: ${actual} ≠ ${expected}`);
    near(metricValue(text, 'kurir_cost_total', { channel: 'whatsapp', country: 'ID', currency: 'USD' }), (4 * WHATSAPP_ID) / 1e6, 'WhatsApp cost');
    near(metricValue(text, 'kurir_cost_total', { channel: 'sms', country: 'ID', currency: 'USD' }), smsMicros() / 1e6, 'SMS cost');
    near(metricValue(text, 'kurir_cost_total', { channel: 'email', country: 'ZZ', currency: 'USD' }), EMAIL / 1e6, 'email cost');
    assert.equal(metricValue(text, 'kurir_messages_billable_total', { channel: 'whatsapp', country: 'ID' }), 4);
    assert.equal(metricValue(text, 'kurir_messages_billable_total', { channel: 'sms', country: 'ID' }), 3);
    assert.equal(metricValue(text, 'kurir_messages_billable_total', { channel: 'email', country: 'ZZ' }), 1);
  });
});

describe('queue dashboard at /admin/queues', () => {
  test('needs the admin token: 401 without it or with a tenant key, with a Basic challenge for browsers', async () => {
    for (const tenant of [null, 'acme'] as const) {
      const reply = await k.request('GET', QUEUE_DASHBOARD_PATH, { tenant });
      assert.equal(reply.status, 401, reply.text);
      assert.equal(reply.body.code, 'unauthorized');
      assert.match(reply.headers.get('www-authenticate') ?? '', /Basic realm="kurir-admin"/);
    }
    const wrongBasic = `Basic ${Buffer.from('ops:not-the-token').toString('base64')}`;
    assert.equal((await k.request('GET', QUEUE_DASHBOARD_PATH, { tenant: null, headers: { Authorization: wrongBasic } })).status, 401);
  });

  test('serves the dashboard with the token (bearer, or as a Basic password) and lists every queue', async () => {
    for (const authorization of [`Bearer ${ADMIN_TOKEN}`, `Basic ${Buffer.from(`ops:${ADMIN_TOKEN}`).toString('base64')}`]) {
      const page = await k.request('GET', QUEUE_DASHBOARD_PATH, { tenant: null, headers: { Authorization: authorization } });
      assert.equal(page.status, 200, page.text);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(page.text, /<html/i);
      assert.match(page.text, new RegExp(`<base href="${QUEUE_DASHBOARD_PATH}/"`), 'assets resolve below the mount path');
      // What a browser fetches next, with the credential it was challenged for.
      const script = /<script defer src="(static\/js\/main\.[^"]+\.js)"/.exec(page.text)?.[1];
      assert.ok(script !== undefined, 'the page loads its script');
      const asset = await k.request('GET', `${QUEUE_DASHBOARD_PATH}/${script}`, { tenant: null, headers: { Authorization: authorization } });
      assert.equal(asset.status, 200);
      assert.match(asset.headers.get('content-type') ?? '', /javascript/);
    }
    const unauthenticatedAsset = await k.request('GET', `${QUEUE_DASHBOARD_PATH}/static/favicon-32x32.png`, { tenant: null });
    assert.equal(unauthenticatedAsset.status, 401);
    const api = await k.request('GET', `${QUEUE_DASHBOARD_PATH}/api/queues`, { tenant: null, headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(api.status, 200, api.text);
    const names = (api.body.queues as { name: string }[]).map((queue) => queue.name).sort();
    assert.deepEqual(names, ['callbacks', 'delivery-timeout', 'receipts', 'send-email', 'send-sms', 'send-whatsapp', 'verification-expiry']);
  });

  test('without an admin token it does not exist (404) and opens no queue', async () => {
    const app = express();
    const queues = {
      queue: (): never => {
        throw new Error('no queue may be opened without an admin token');
      },
    };
    app.use(QUEUE_DASHBOARD_PATH, ...createQueueDashboard({ adminToken: undefined, queues }));
    app.use(problemMiddleware(pino({ level: 'silent' })));
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    try {
      const address = server.address();
      assert.ok(address !== null && typeof address === 'object');
      const response = await fetch(`http://127.0.0.1:${address.port}${QUEUE_DASHBOARD_PATH}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.equal(response.status, 404);
      await response.arrayBuffer();
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('metrics port of the worker and scheduler processes', () => {
  test('the server serves the registry on GET /metrics only, and closes idempotently', async () => {
    const metrics = createMetrics({ role: 'worker', collectDefaults: false });
    metrics.messagesSent.inc({ channel: 'sms', provider: 'ycloud', result: 'accepted' });
    const server = await startMetricsServer(metrics.registry, { port: 0, host: '127.0.0.1' });
    try {
      const response = await fetch(server.url);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(await response.text(), /kurir_messages_sent_total\{channel="sms",provider="ycloud",result="accepted",role="worker"\} 1/);
      const other = await fetch(`http://127.0.0.1:${server.port}/`);
      assert.equal(other.status, 404);
      await other.arrayBuffer();
      const post = await fetch(server.url, { method: 'POST' });
      assert.equal(post.status, 405);
      await post.arrayBuffer();
    } finally {
      await server.close();
      await server.close();
    }
    await assert.rejects(fetch(server.url));
  });

  test('port 0 turns it off; a port in use is logged and the process goes on without it', async () => {
    const registry = createMetrics({ role: 'worker', collectDefaults: false }).registry;
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    assert.equal(await serveMetrics(registry, { port: 0, logger }), undefined);
    const taken = await startMetricsServer(registry, { port: 0 });
    try {
      assert.equal(await serveMetrics(registry, { port: taken.port, logger }), undefined);
      assert.ok(lines.some((line) => line.level === 50 && line.port === taken.port), JSON.stringify(lines));
    } finally {
      await taken.close();
    }
  });

  test('worker/main.ts and scheduler/main.ts serve /metrics on METRICS_PORT and close it on SIGTERM', async () => {
    const group = new ProcessGroup();
    const prefix = freshPrefix('metrics-port');
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const [workerPort, schedulerPort] = await Promise.all([freePort(), freePort()]);
      const env = { KURIR_KEY_PREFIX: prefix, LOG_FORMAT: 'json' };
      const roles = [
        { name: 'worker', process: group.spawn('worker', 'worker/main.ts', { ...env, METRICS_PORT: String(workerPort) }), port: workerPort },
        { name: 'scheduler', process: group.spawn('scheduler', 'scheduler/main.ts', { ...env, METRICS_PORT: String(schedulerPort) }), port: schedulerPort },
      ];
      for (const role of roles) {
        await role.process.waitForLog((record) => record.msg === `${role.name} started`, { timeoutMs: 20_000, what: `${role.name} started` });
        const response = await fetch(`http://127.0.0.1:${role.port}/metrics`);
        assert.equal(response.status, 200);
        const text = await response.text();
        assert.match(text, new RegExp(`kurir_process_process_cpu_seconds_total\\{role="${role.name}"\\}`));
        assert.match(text, /# TYPE kurir_cost_total counter/);
      }
      for (const role of roles) {
        role.process.signal('SIGTERM');
        const status = await role.process.waitForExit(15_000);
        assert.equal(status.signal, 'SIGTERM', role.process.transcript());
        await assert.rejects(fetch(`http://127.0.0.1:${role.port}/metrics`), `${role.name}: the metrics port is closed`);
      }
    } finally {
      await group.killAll();
      await deletePrefix(redis, prefix);
      await redis.quit();
    }
  });
});
