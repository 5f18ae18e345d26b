import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_POLICY } from '../../common/config/policy.js';
import { measureSms } from '../../common/messages/sms-encoding.js';
import { DELIVERY_LATENCY_BUCKETS, TIME_TO_VERIFY_BUCKETS, createMetrics } from '../../common/observability/metrics.js';
import { toMicros, unitPrice, unitsOnSend } from '../../common/stats/cost.js';
import { bucketIndex, percentile } from '../../common/stats/histogram.js';
import { addField, emptyTotals, statsFields, statsKey, type StatsFilters } from '../../common/stats/stats.store.js';
import { summarize } from '../../common/stats/summary.js';

const BOUNDS = [1, 2, 5, 10];
const NO_FILTER: StatsFilters = { country: undefined, channel: undefined };

describe('histogram buckets', () => {
  test('a sample goes to the first bucket whose upper bound is at least the sample (le), else the overflow bucket', () => {
    assert.deepEqual([0, 0.5, 1, 1.0001, 2, 4.9, 5, 10, 10.5, 1e9].map((value) => bucketIndex(BOUNDS, value)), [0, 0, 0, 1, 1, 2, 2, 3, 4, 4]);
  });

  test('the Prometheus buckets of the latency histograms are the ones the stats use', async () => {
    const metrics = createMetrics({ role: 'test', collectDefaults: false });
    metrics.deliveryLatency.observe({ channel: 'sms', country: 'ID' }, 1);
    metrics.timeToVerify.observe({ channel: 'sms', purpose: 'login' }, 1);
    const buckets = async (name: string) => {
      const metric = metrics.registry.getSingleMetric(name);
      assert.ok(metric !== undefined, name);
      const { values } = await metric.get();
      return values.flatMap((value) => (value.labels.le === undefined || value.labels.le === '+Inf' ? [] : [Number(value.labels.le)]));
    };
    assert.deepEqual(await buckets('kurir_delivery_latency_seconds'), [...DELIVERY_LATENCY_BUCKETS]);
    assert.deepEqual(await buckets('kurir_time_to_verify_seconds'), [...TIME_TO_VERIFY_BUCKETS]);
  });
});

describe('percentiles from bucket counts', () => {
  test('no samples: null', () => {
    assert.equal(percentile(BOUNDS, [0, 0, 0, 0, 0], 0.5), null);
  });

  test('interpolates linearly inside the bucket that holds the rank, the first bucket starting at 0', () => {
    // 4 samples in (0, 1]: the median is rank 2 of 4 → halfway through the bucket.
    assert.equal(percentile(BOUNDS, [4, 0, 0, 0, 0], 0.5), 0.5);
    // 10 samples: 2 in (0,1], 6 in (1,2], 2 in (2,5]. Median rank 5 → 3 of 6 into (1,2] = 1.5.
    assert.equal(percentile(BOUNDS, [2, 6, 2, 0, 0], 0.5), 1.5);
    // p95 rank 9.5 → 1.5 of 2 into (2,5] = 2 + 3 × 0.75.
    assert.equal(percentile(BOUNDS, [2, 6, 2, 0, 0], 0.95), 4.25);
    // Rank exactly at a bucket's end: its upper bound.
    assert.equal(percentile(BOUNDS, [2, 2, 0, 0, 0], 0.5), 1);
  });

  test('empty buckets before the rank are skipped, and one sample sits at its bucket\'s upper bound for p = 1', () => {
    assert.equal(percentile(BOUNDS, [0, 0, 0, 1, 0], 1), 10);
    assert.equal(percentile(BOUNDS, [0, 0, 0, 1, 0], 0.5), 7.5);
  });

  test('a rank in the overflow bucket answers the last finite bound', () => {
    assert.equal(percentile(BOUNDS, [1, 0, 0, 0, 9], 0.5), 10);
    assert.equal(percentile(BOUNDS, [0, 0, 0, 0, 3], 0.95), 10);
  });

  test('stays within the bucket of the true percentile (the resolution promise)', () => {
    const samples = [0.2, 0.3, 0.7, 1.4, 1.6, 1.9, 3, 4, 4.5, 8, 12];
    const counts = new Array<number>(BOUNDS.length + 1).fill(0);
    for (const sample of samples) counts[bucketIndex(BOUNDS, sample)] = (counts[bucketIndex(BOUNDS, sample)] ?? 0) + 1;
    const sorted = [...samples].sort((a, b) => a - b);
    for (const q of [0.5, 0.9, 0.95]) {
      const truth = sorted[Math.ceil(q * sorted.length) - 1] ?? 0;
      const estimate = percentile(BOUNDS, counts, q) ?? -1;
      const index = bucketIndex(BOUNDS, truth);
      const lower = index === 0 ? 0 : (BOUNDS[index - 1] ?? 0);
      const upper = BOUNDS[index] ?? (BOUNDS.at(-1) ?? 0);
      assert.ok(estimate >= lower && estimate <= upper, `q=${q}: ${estimate} outside the bucket (${lower}, ${upper}] of ${truth}`);
    }
  });

  test('refuses a quantile outside (0, 1]', () => {
    assert.throws(() => percentile(BOUNDS, [1, 0, 0, 0, 0], 0), RangeError);
    assert.throws(() => percentile(BOUNDS, [1, 0, 0, 0, 0], 1.5), RangeError);
  });
});

describe('stats fields', () => {
  test('one hash per tenant and hour, the tenant as hash tag', () => {
    assert.equal(statsKey('kurir', 'acme', 472_222), 'kurir:stats:{acme}:472222');
  });

  test('counters and histogram buckets become <minute>:<metric>:<country>:<channel> fields', () => {
    assert.deepEqual(
      statsFields(7, { country: 'ID', channel: 'whatsapp', counters: { delivered: 1, cost: 30_000, sent: 0 }, samples: { ttd: 0.7, ttv: 1000 } }),
      [
        ['7:delivered:ID:whatsapp', 1],
        ['7:cost:ID:whatsapp', 30_000],
        ['7:ttd1:ID:whatsapp', 1],
        [`7:ttv${TIME_TO_VERIFY_BUCKETS.length}:ID:whatsapp`, 1],
      ],
    );
  });

  test('fields add up under the filters; foreign fields are ignored', () => {
    const totals = emptyTotals();
    const onlySms: StatsFilters = { country: 'ID', channel: 'sms' };
    const fields: [string, number][] = [
      ['1:created:ID:sms', 2],
      ['1:created:ID:whatsapp', 5],
      ['2:ttd0:ID:sms', 3],
      ['2:ttd99:ID:sms', 3],
      ['3:approved:BR:sms', 1],
      ['3:bogus:ID:sms', 1],
      ['3:sent:ID:fax', 1],
      ['nonsense', 1],
    ];
    for (const [field, value] of fields) addField(totals, field, value, onlySms);
    assert.equal(totals.counters.created, 2);
    assert.equal(totals.counters.approved, 0);
    assert.equal(totals.counters.sent, 0);
    assert.equal(totals.histograms.ttd[0], 3);
    assert.equal(totals.histograms.ttd.reduce((a, b) => a + b, 0), 3);

    const everything = emptyTotals();
    for (const [field, value] of fields) addField(everything, field, value, NO_FILTER);
    assert.equal(everything.counters.created, 7);
    assert.equal(everything.counters.approved, 1);
  });
});

describe('summary', () => {
  test('rates, percentiles and cost from totals', () => {
    const totals = emptyTotals();
    Object.assign(totals.counters, { created: 8, approved: 6, expired: 1, max_attempts: 1, sent: 10, delivered: 7, fallback: 2, cost: 183_100 });
    totals.histograms.ttd[0] = 7;
    totals.histograms.ttv[0] = 6;
    const summary = summarize(totals, { fromMs: 0, toMs: 3_600_000, country: 'ID', channel: undefined, currency: 'USD' });
    assert.deepEqual(summary, {
      from: '1970-01-01T00:00:00.000Z',
      to: '1970-01-01T01:00:00.000Z',
      filters: { country: 'ID', channel: null },
      created: 8,
      approved: 6,
      expired: 1,
      maxAttempts: 1,
      conversion: 0.75,
      deliveries: { sent: 10, delivered: 7, deliveryRate: 0.7 },
      fallbacks: { count: 2, rate: 0.25 },
      timeToDeliver: { p50: 0.25, p95: 0.475 },
      timeToVerify: { p50: 2.5, p95: 4.75 },
      cost: { total: 0.1831, currency: 'USD', perApproved: 0.030517 },
    });
  });

  test('nothing recorded: zero counts, null rates and percentiles', () => {
    const summary = summarize(emptyTotals(), { fromMs: 0, toMs: 60_000, country: undefined, channel: 'sms', currency: 'USD' });
    assert.equal(summary.conversion, null);
    assert.equal(summary.deliveries.deliveryRate, null);
    assert.equal(summary.fallbacks.rate, null);
    assert.deepEqual(summary.timeToDeliver, { p50: null, p95: null });
    assert.deepEqual(summary.cost, { total: 0, currency: 'USD', perApproved: null });
    assert.deepEqual(summary.filters, { country: null, channel: 'sms' });
  });
});

describe('cost', () => {
  const prices = DEFAULT_POLICY.prices;

  test('country price when listed, the channel default otherwise', () => {
    assert.equal(unitPrice(prices, 'whatsapp', 'ID'), 0.03);
    assert.equal(unitPrice(prices, 'whatsapp', 'IN'), 0.0014);
    assert.equal(unitPrice(prices, 'whatsapp', 'FR'), prices.whatsapp.default);
    assert.equal(unitPrice(prices, 'sms', 'ZZ'), 0.05);
    assert.equal(unitPrice(prices, 'email', 'ZZ'), 0.0001);
    // Object.prototype is not a price table.
    assert.equal(unitPrice(prices, 'sms', 'constructor'), 0.05);
  });

  test('units at send: SMS segments of the rendered text, one email, nothing for WhatsApp (billed on delivery)', () => {
    const base = { to: '+6281234560000', externalId: 'ver_x-1' };
    const long = 'x'.repeat(161);
    assert.equal(unitsOnSend({ ...base, channel: 'sms', text: 'Your code is 123456' }), 1);
    assert.equal(unitsOnSend({ ...base, channel: 'sms', text: long }), measureSms(long).segments);
    assert.equal(unitsOnSend({ ...base, channel: 'sms', text: long }), 2);
    // Devanagari is UCS-2: 70 characters per single segment.
    assert.equal(unitsOnSend({ ...base, channel: 'sms', text: 'क'.repeat(71) }), 2);
    assert.equal(unitsOnSend({ ...base, channel: 'email', subject: 's', text: 't', html: '<p>t</p>' }), 1);
    assert.equal(unitsOnSend({ ...base, channel: 'whatsapp', templateName: 'kurir_otp', templateLanguage: 'id', code: '123456' }), 0);
  });

  test('micro-units are integers', () => {
    assert.equal(toMicros(0.0415 * 3), 124_500);
    assert.equal(toMicros(0.0001), 100);
  });
});
