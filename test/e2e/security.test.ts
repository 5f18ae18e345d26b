import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TENANTS, asView, startKurir, type HttpReply, type KurirHarness } from '../helpers/kurir.js';

/**
 * The abuse-resistance acceptance end to end, over real HTTP and the real Redis: every send limit,
 * the geo and number-type rules, the daily budget and the pumping guard refuse with 429/403 (or
 * the tenant's silent decoy) and the simulator sees no provider call for the refused request;
 * another tenant's verification answers exactly like an unknown id; wrong codes lock a
 * destination across its verifications; concurrent checks neither approve twice nor exceed the
 * attempt limit.
 *
 * One `describe` per policy file (test/fixtures/security-*.policy.yaml), each with its own
 * Kurir (API, workers, scheduler, simulator) on a fresh Redis prefix.
 *
 * Proving a negative: a refused request stores and queues nothing, so there is no event to wait
 * for. `settle` waits until allowed verifications created around the same time reached the
 * simulator (same queues, same workers), then grants SETTLE_MS for a worker that might still be
 * mid-call, and only then looks at the simulator's record. That short wait is the only fixed
 * sleep in this file.
 */

const SETTLE_MS = 250;
const ADMIN_TOKEN = 'kurir-admin-token-for-security-e2e-0123456789';

type Tenant = keyof typeof TENANTS;

interface Created {
  id: string;
  status: string;
  to: string;
  plan: string[];
  channel: string;
  attemptsRemaining: number;
  createdAt: string;
  expiresAt: string;
}

interface CheckAnswer {
  id: string;
  status: string;
  valid: boolean;
  attemptsRemaining: number;
}

interface LimitRow {
  rule: string;
  limit: number | null;
  used: number;
  remaining: number | null;
  resetAt: string | null;
  retryAfterSeconds: number;
}

interface LimitsAnswer {
  to: string;
  limits: LimitRow[];
  lockout: { locked: boolean; retryAfterSeconds: number };
  quarantined: boolean;
  budgets: { channel: string; dailyMessages: number | null; used: number; resetAt: string }[];
}

interface QuarantineRow {
  subject: { dimension: string; value: string };
  until: number;
  reason: string;
  shadow: boolean;
}

function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/security-${name}.policy.yaml`, import.meta.url));
}

// ---------------------------------------------------------------------------------------------
// Numbers. The send limits and the pumping guard count per prefix (the number without its last
// 4 digits), so every helper hands out a prefix of its own unless the test asks to share one.

const usedBlocks = new Set<string>();

/** Four digits that no other number of this file uses in its prefix. */
function freshBlock(): string {
  for (;;) {
    const block = String(randomInt(10_000)).padStart(4, '0');
    if (!usedBlocks.has(block)) {
      usedBlocks.add(block);
      return block;
    }
  }
}

let serial = 5000;
/** Last four digits outside the simulator's magic ranges (10xx, 20xx): a plain delivered send. */
function plainLast4(): string {
  serial += 1;
  return String(serial);
}

/** A valid Indonesian mobile `+62812<block><last4>` (prefix `+62812<block>`). */
function idNumber(last4 = plainLast4(), block = freshBlock()): string {
  return `+62812${block}${last4}`;
}

/** A valid Brazilian mobile `+55119<block><last4>`. */
function brNumber(last4 = plainLast4(), block = freshBlock()): string {
  return `+55119${block}${last4}`;
}

/** A valid German mobile `+49151<block><last4>`. */
function deNumber(last4 = plainLast4(), block = freshBlock()): string {
  return `+49151${block}${last4}`;
}

/** A valid US number (FIXED_LINE_OR_MOBILE, SMS-only country). All share the prefix `+1650253`. */
function usNumber(last4 = plainLast4()): string {
  return `+1650253${last4}`;
}

function prefixOf(e164: string): string {
  return e164.slice(0, -4);
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers.

function create(k: KurirHarness, to: string, extra: Record<string, unknown> = {}, tenant: Tenant = 'acme'): Promise<HttpReply> {
  return k.request('POST', '/v1/verifications', { tenant, body: { to, purpose: 'login', ...extra } });
}

async function created(k: KurirHarness, to: string, extra: Record<string, unknown> = {}, tenant: Tenant = 'acme'): Promise<Created> {
  const reply = await create(k, to, extra, tenant);
  assert.equal(reply.status, 202, reply.text);
  return reply.body as unknown as Created;
}

async function check(k: KurirHarness, id: string, code: string, tenant: Tenant = 'acme'): Promise<HttpReply> {
  return k.request('POST', `/v1/verifications/${id}/check`, { tenant, body: { code } });
}

async function checked(k: KurirHarness, id: string, code: string, tenant: Tenant = 'acme'): Promise<CheckAnswer> {
  const reply = await check(k, id, code, tenant);
  assert.equal(reply.status, 200, reply.text);
  return reply.body as unknown as CheckAnswer;
}

async function limits(k: KurirHarness, to: string, options: { ip?: string; tenant?: Tenant } = {}): Promise<LimitsAnswer> {
  const query = new URLSearchParams({ to, ...(options.ip === undefined ? {} : { ip: options.ip }) });
  const reply = await k.request('GET', `/v1/limits?${query.toString()}`, { tenant: options.tenant ?? 'acme' });
  assert.equal(reply.status, 200, reply.text);
  return reply.body as unknown as LimitsAnswer;
}

function row(answer: LimitsAnswer, rule: string): LimitRow {
  const found = answer.limits.find((limit) => limit.rule === rule);
  assert.ok(found, `GET /v1/limits has no rule ${rule}: ${JSON.stringify(answer.limits)}`);
  return found;
}

/** A problem document with the given status, code and rule. */
function assertRefused(reply: HttpReply, status: number, code: string, rule: string): void {
  assert.equal(reply.status, status, reply.text);
  assert.match(reply.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(reply.body.code, code, reply.text);
  assert.equal(reply.body.rule, rule, reply.text);
  assert.equal(reply.body.id, undefined, 'a refusal names no verification');
}

/** The Retry-After header (whole seconds, matching the body's retryAfterSeconds), within [min, max]. */
function assertRetryAfter(reply: HttpReply, min: number, max: number): number {
  const header = reply.headers.get('retry-after');
  assert.ok(header !== null, `no Retry-After on ${reply.status} ${reply.text}`);
  const seconds = Number(header);
  assert.ok(Number.isInteger(seconds), `Retry-After ${header}`);
  assert.equal(reply.body.retryAfterSeconds, seconds);
  assert.ok(seconds >= min && seconds <= max, `Retry-After ${seconds} not in [${min}, ${max}]`);
  return seconds;
}

/** The first provider call of a verification's first delivery (its externalId is `<id>-1`). */
async function firstMessage(k: KurirHarness, id: string, timeoutMs = 5000) {
  return await k.simulator.waitForMessage((m) => m.externalId === `${id}-1` && m.httpStatus === 200, timeoutMs);
}

async function codeOf(k: KurirHarness, id: string): Promise<string> {
  const code = (await firstMessage(k, id)).code;
  assert.ok(code !== undefined && /^\d{6}$/.test(code), `no code for ${id}`);
  return code;
}

function wrongCode(code: string): string {
  return code === '000000' ? '111111' : '000000';
}

/** See the file comment: wait for allowed sends made alongside, then a short grace. */
async function settle(k: KurirHarness, allowedIds: readonly string[]): Promise<void> {
  await Promise.all(allowedIds.map((id) => firstMessage(k, id)));
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function viewAs(k: KurirHarness, id: string, tenant: Tenant) {
  const reply = await k.request('GET', `/v1/verifications/${id}`, { tenant });
  assert.equal(reply.status, 200, reply.text);
  return asView(reply.body);
}

/** Sum of a Prometheus counter over the series whose labels include `labels`. */
async function counter(k: KurirHarness, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${k.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const found = new Map([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([label, value]) => found.get(label) === value)) sum += Number(match[3]);
  }
  return sum;
}

function admin(k: KurirHarness, method: string, path: string, authorization: string | undefined): Promise<HttpReply> {
  return k.request(method, path, { tenant: null, headers: authorization === undefined ? {} : { Authorization: authorization } });
}

/**
 * Runs `body` with the API's clock 61 s behind, so the sends it makes land in an earlier clock
 * minute. The pumping guard counts sends in minute buckets and treats a send as "matured" (old
 * enough to be judged) only once its whole minute is older than graceSeconds, so even with
 * graceSeconds 0 a burst is judged only from the next clock minute on. Without this the test
 * would wait for the next minute boundary (up to 60 s). Only the clock moves; every request
 * still goes over HTTP through the real pipeline.
 */
async function aMinuteAgo<T>(k: KurirHarness, body: () => Promise<T>): Promise<T> {
  const services = k.kurir.services;
  const real = services.now;
  services.now = () => Date.now() - 61_000;
  try {
    const result = await body();
    // What the process batches (the guard's approvals, the stats) is written as of that minute too.
    await Promise.all([services.guard.flush(), services.stats.flush()]);
    return result;
  } finally {
    services.now = real;
  }
}

// =============================================================================================

describe('production send limits (security-limits.policy.yaml)', () => {
  let k: KurirHarness;
  before(async () => {
    k = await startKurir({ KURIR_POLICY_FILE: fixture('limits') });
  });
  after(async () => {
    await k.close();
  });

  test('GET /v1/limits of a fresh destination: every limit unused, and asking does not count', async () => {
    const to = idNumber();
    const ip = '198.51.100.20';
    for (let i = 0; i < 3; i += 1) await limits(k, to, { ip });
    const fresh = await limits(k, to, { ip });
    assert.equal(fresh.to, to);
    assert.deepEqual(
      fresh.limits.map((limit) => limit.rule),
      ['destination_cooldown', 'destination_10m', 'destination_24h', 'tenant_rate', 'ip_destinations', 'prefix_rate', 'country_rate'],
    );
    const expected: Record<string, number | null> = {
      destination_cooldown: null,
      destination_10m: 3,
      destination_24h: 10,
      tenant_rate: 100,
      ip_destinations: 10,
      prefix_rate: 200,
      country_rate: 50,
    };
    for (const limit of fresh.limits) {
      if (limit.rule === 'tenant_rate' || limit.rule === 'country_rate') {
        assert.equal(limit.limit, expected[limit.rule]);
        continue; // other tests of this tenant may be sending in the same second
      }
      assert.deepEqual(
        limit,
        { rule: limit.rule, limit: expected[limit.rule], used: 0, remaining: expected[limit.rule], resetAt: null, retryAfterSeconds: 0 },
      );
    }
    assert.deepEqual(fresh.lockout, { locked: false, retryAfterSeconds: 0 });
    assert.equal(fresh.quarantined, false);
    // The reads recorded nothing: the first create goes through.
    const first = await created(k, to, { context: { ip } });
    await firstMessage(k, first.id);
  });

  test('destination back-off: a second code within 30 s is 429 destination_cooldown (Retry-After ≈ 30) and is not sent', async () => {
    const to = idNumber();
    const first = await created(k, to);
    const createdAt = Date.parse(first.createdAt);
    await firstMessage(k, first.id);

    const second = await create(k, to);
    assertRefused(second, 429, 'rate_limited', 'destination_cooldown');
    assertRetryAfter(second, 28, 30);
    // Also by SMS: the limit is per destination, not per channel.
    assertRefused(await create(k, to, { channel: 'sms' }), 429, 'rate_limited', 'destination_cooldown');

    const status = await limits(k, to);
    const cooldown = row(status, 'destination_cooldown');
    assert.equal(cooldown.used, 1);
    assert.ok(cooldown.retryAfterSeconds >= 27 && cooldown.retryAfterSeconds <= 30, JSON.stringify(cooldown));
    const tenMinutes = row(status, 'destination_10m');
    assert.deepEqual([tenMinutes.limit, tenMinutes.used, tenMinutes.remaining, tenMinutes.retryAfterSeconds], [3, 1, 2, 0]);
    assert.ok(Math.abs(Date.parse(tenMinutes.resetAt ?? '') - (createdAt + 600_000)) < 5000, `resetAt ${tenMinutes.resetAt}`);
    const day = row(status, 'destination_24h');
    assert.deepEqual([day.limit, day.used, day.remaining], [10, 1, 9]);
    assert.ok(Math.abs(Date.parse(day.resetAt ?? '') - (createdAt + 86_400_000)) < 5000, `resetAt ${day.resetAt}`);
    const prefix = row(status, 'prefix_rate');
    assert.deepEqual([prefix.limit, prefix.used, prefix.remaining], [200, 1, 199]);

    await settle(k, [first.id]);
    assert.equal(k.sentTo(to).length, 1, 'only the first create reached the provider');
  });

  test('client IP: 10 distinct destinations per 10 minutes; the 11th is 429 ip_destinations and is not sent', async () => {
    const ip = '203.0.113.7';
    const numbers = Array.from({ length: 11 }, () => idNumber());
    const ids: string[] = [];
    for (const to of numbers.slice(0, 10)) ids.push((await created(k, to, { context: { ip } })).id);
    const eleventh = numbers[10] ?? '';

    const refused = await create(k, eleventh, { context: { ip } });
    assertRefused(refused, 429, 'rate_limited', 'ip_destinations');
    assertRetryAfter(refused, 590, 600);

    const status = row(await limits(k, eleventh, { ip }), 'ip_destinations');
    assert.deepEqual([status.limit, status.used, status.remaining], [10, 10, 0]);
    assert.ok(status.retryAfterSeconds >= 590, JSON.stringify(status));
    // A destination already seen from that IP is not a new one (its own back-off still applies).
    assert.equal(row(await limits(k, numbers[0] ?? '', { ip }), 'ip_destinations').retryAfterSeconds, 0);

    await settle(k, ids);
    assert.deepEqual(k.sentTo(eleventh), []);
    // The refusal left no trace in the destination's limits: from another IP it goes out at once.
    const elsewhere = await created(k, eleventh, { context: { ip: '203.0.113.8' } });
    await firstMessage(k, elsewhere.id);
    assert.equal(k.sentTo(eleventh).length, 1);
  });

  test('destination window (beta: 2 per 10 minutes, no back-off): the 3rd code is 429 destination_10m and is not sent', async () => {
    const to = idNumber();
    const first = await created(k, to, {}, 'beta');
    const second = await created(k, to, {}, 'beta');
    const third = await create(k, to, {}, 'beta');
    assertRefused(third, 429, 'rate_limited', 'destination_10m');
    assertRetryAfter(third, 590, 600);
    const status = row(await limits(k, to, { tenant: 'beta' }), 'destination_10m');
    assert.deepEqual([status.limit, status.used, status.remaining], [2, 2, 0]);
    // Limits are per tenant: acme may still send to that number.
    const acme = await created(k, to);
    await settle(k, [first.id, second.id, acme.id]);
    assert.equal(k.sentTo(to).length, 3, 'beta ×2 and acme ×1, not the refused third');
  });

  test('prefix (beta: 3 per hour): the 4th number of one 10,000-number block is 429 prefix_rate and is not sent', async () => {
    const block = freshBlock();
    const numbers = Array.from({ length: 4 }, () => idNumber(plainLast4(), block));
    const ids: string[] = [];
    for (const to of numbers.slice(0, 3)) ids.push((await created(k, to, {}, 'beta')).id);
    const fourth = numbers[3] ?? '';
    const refused = await create(k, fourth, {}, 'beta');
    assertRefused(refused, 429, 'rate_limited', 'prefix_rate');
    assertRetryAfter(refused, 3590, 3600);

    const status = row(await limits(k, fourth, { tenant: 'beta' }), 'prefix_rate');
    assert.deepEqual([status.limit, status.used, status.remaining], [3, 3, 0]);
    assert.ok(status.resetAt !== null && Date.parse(status.resetAt) > Date.now() + 3_500_000, `resetAt ${status.resetAt}`);
    // Another block of the same country is not affected.
    const other = await created(k, idNumber(), {}, 'beta');
    await settle(k, [...ids, other.id]);
    assert.deepEqual(k.sentTo(fourth), []);
    assert.equal(prefixOf(fourth), prefixOf(numbers[0] ?? ''));
  });

  test('without KURIR_ADMIN_TOKEN the /admin endpoints do not exist (404 like any unknown path)', async () => {
    const unknownPath = await k.request('GET', '/no-such-endpoint', { tenant: null });
    assert.equal(unknownPath.status, 404);
    for (const authorization of [undefined, `Bearer ${TENANTS.acme}`, `Bearer ${ADMIN_TOKEN}`]) {
      for (const [method, path] of [
        ['GET', '/admin/quarantines?tenant=acme'],
        ['DELETE', '/admin/quarantines?tenant=acme&dimension=prefix&value=%2B62812'],
        ['POST', '/admin/unlock'],
      ] as const) {
        const reply = await admin(k, method, path, authorization);
        assert.equal(reply.status, 404, `${method} ${path}: ${reply.text}`);
        assert.deepEqual(reply.body, unknownPath.body);
        assert.equal(reply.headers.get('www-authenticate'), null);
      }
    }
  });
});

// =============================================================================================

describe('per-second and daily limits (security-rates.policy.yaml)', () => {
  let k: KurirHarness;
  before(async () => {
    k = await startKurir({ KURIR_POLICY_FILE: fixture('rates') });
  });
  after(async () => {
    await k.close();
  });

  test('tenant (acme: 3 per second): of 4 simultaneous creates exactly one is 429 tenant_rate and is not sent', async () => {
    // Four countries, so neither a destination nor a country limit is involved.
    const numbers = [idNumber(), usNumber(), brNumber(), deNumber()];
    const replies = await Promise.all(numbers.map((to) => create(k, to, { channel: 'sms' })));
    assert.deepEqual(replies.map((reply) => reply.status).sort(), [202, 202, 202, 429], replies.map((r) => r.text).join('\n'));
    const refusedAt = replies.findIndex((reply) => reply.status === 429);
    const refused = replies[refusedAt] as HttpReply;
    assertRefused(refused, 429, 'rate_limited', 'tenant_rate');
    assertRetryAfter(refused, 1, 1);
    await settle(k, replies.filter((reply) => reply.status === 202).map((reply) => String(reply.body.id)));
    assert.deepEqual(k.sentTo(numbers[refusedAt] ?? ''), []);
    for (const [i, to] of numbers.entries()) if (i !== refusedAt) assert.equal(k.sentTo(to).length, 1);
  });

  test('country (beta: 3 per second): of 4 simultaneous Indonesian creates one is 429 country_rate; a US number goes through', async () => {
    const indonesian = Array.from({ length: 4 }, () => idNumber());
    const us = usNumber();
    const replies = await Promise.all([...indonesian, us].map((to) => create(k, to, { channel: 'sms' }, 'beta')));
    const usReply = replies[4] as HttpReply;
    assert.equal(usReply.status, 202, usReply.text);
    const idReplies = replies.slice(0, 4);
    assert.deepEqual(idReplies.map((reply) => reply.status).sort(), [202, 202, 202, 429], idReplies.map((r) => r.text).join('\n'));
    const refusedAt = idReplies.findIndex((reply) => reply.status === 429);
    assertRefused(idReplies[refusedAt] as HttpReply, 429, 'rate_limited', 'country_rate');
    assertRetryAfter(idReplies[refusedAt] as HttpReply, 1, 1);
    await settle(k, replies.filter((reply) => reply.status === 202).map((reply) => String(reply.body.id)));
    assert.deepEqual(k.sentTo(indonesian[refusedAt] ?? ''), []);
    assert.equal(k.sentTo(us).length, 1);
  });

  test('destination per day (beta: 2 per 24 h): the 3rd code is 429 destination_24h (Retry-After ≈ 24 h) and is not sent', async () => {
    const to = deNumber();
    const first = await created(k, to, {}, 'beta');
    const second = await created(k, to, {}, 'beta');
    const third = await create(k, to, {}, 'beta');
    assertRefused(third, 429, 'rate_limited', 'destination_24h');
    assertRetryAfter(third, 86_300, 86_400);
    const day = row(await limits(k, to, { tenant: 'beta' }), 'destination_24h');
    assert.deepEqual([day.limit, day.used, day.remaining], [2, 2, 0]);
    await settle(k, [first.id, second.id]);
    assert.equal(k.sentTo(to).length, 2);
  });
});

// =============================================================================================

describe('geo and number type (security-geo.policy.yaml)', () => {
  let k: KurirHarness;
  before(async () => {
    k = await startKurir({ KURIR_POLICY_FILE: fixture('geo') });
  });
  after(async () => {
    await k.close();
  });

  test('a denied country (BR) is 403 destination_not_allowed, rule geo, on every channel, and nothing is sent', async () => {
    const to = brNumber();
    for (const channel of ['auto', 'whatsapp', 'sms'] as const) {
      const reply = await create(k, to, { channel });
      assertRefused(reply, 403, 'destination_not_allowed', 'geo');
      assert.equal(reply.headers.get('retry-after'), null, 'a geo refusal is final, not a back-off');
    }
    const sentinel = await created(k, usNumber());
    await settle(k, [sentinel.id]);
    assert.deepEqual(k.sentTo(to), []);
  });

  test('WhatsApp denied for ID: the plan is SMS only and the simulator sees only SMS', async () => {
    const to = idNumber();
    const auto = await created(k, to);
    assert.deepEqual([auto.plan, auto.channel], [['sms'], 'sms']);
    // The end user asking for WhatsApp does not get around it either.
    const asked = await created(k, to, { channel: 'whatsapp' });
    assert.deepEqual([asked.plan, asked.channel], [['sms'], 'sms']);
    await k.waitFor(auto.id, (v) => v.deliveries[0]?.status === 'delivered');
    await k.waitFor(asked.id, (v) => v.deliveries[0]?.status === 'delivered');

    // A resend over WhatsApp passes the same gate.
    const resend = await k.request('POST', `/v1/verifications/${auto.id}/resend`, { body: { channel: 'whatsapp' } });
    assertRefused(resend, 403, 'destination_not_allowed', 'geo');
    const bySms = await k.request('POST', `/v1/verifications/${auto.id}/resend`, { body: { channel: 'sms' } });
    assert.equal(bySms.status, 202, bySms.text);
    await k.simulator.waitForMessage((m) => m.externalId === `${auto.id}-2`);
    await sleep(SETTLE_MS);
    assert.deepEqual(k.sentTo(to).map((m) => m.channel), ['sms', 'sms', 'sms']);
  });

  test('number type: a UK fixed line and a US toll-free number are 403 destination_not_allowed, rule number_type', async () => {
    const numbers = ['+442079460958', '+18002530000'];
    for (const to of numbers) {
      for (const channel of ['auto', 'sms'] as const) assertRefused(await create(k, to, { channel }), 403, 'destination_not_allowed', 'number_type');
    }
    const sentinel = await created(k, usNumber());
    await settle(k, [sentinel.id]);
    for (const to of numbers) assert.deepEqual(k.sentTo(to), []);
  });
});

// =============================================================================================

describe('checks: tenants, lockout, concurrency (security-checks.policy.yaml)', () => {
  let k: KurirHarness;
  before(async () => {
    k = await startKurir({ KURIR_POLICY_FILE: fixture('checks') });
  });
  after(async () => {
    await k.close();
  });

  test("another tenant's verification is indistinguishable from an unknown id (GET, check, resend, cancel)", async () => {
    const to = idNumber();
    const mine = await created(k, to, { channel: 'sms' });
    const code = await codeOf(k, mine.id);
    const unknownId = `ver_${randomBytes(12).toString('hex')}`;
    const operations: [string, (id: string) => string, unknown][] = [
      ['GET', (id) => `/v1/verifications/${id}`, undefined],
      ['POST', (id) => `/v1/verifications/${id}/check`, { code }],
      ['POST', (id) => `/v1/verifications/${id}/check`, { code: wrongCode(code) }],
      ['POST', (id) => `/v1/verifications/${id}/resend`, { channel: 'sms' }],
      ['POST', (id) => `/v1/verifications/${id}/resend`, undefined],
      ['POST', (id) => `/v1/verifications/${id}/cancel`, undefined],
    ];
    for (const [method, path, body] of operations) {
      const options = { tenant: 'beta' as const, ...(body === undefined ? {} : { body }) };
      const foreign = await k.request(method, path(mine.id), options);
      const unknown = await k.request(method, path(unknownId), options);
      const what = `${method} ${path(':id')} ${JSON.stringify(body)}`;
      assert.equal(foreign.status, unknown.status, `${what}: ${foreign.text} vs ${unknown.text}`);
      assert.deepEqual(
        JSON.parse(foreign.text.replaceAll(mine.id, '<id>')),
        JSON.parse(unknown.text.replaceAll(unknownId, '<id>')),
        what,
      );
      for (const header of ['content-type', 'retry-after', 'www-authenticate', 'location']) {
        assert.equal(foreign.headers.get(header), unknown.headers.get(header), `${what}: header ${header}`);
      }
    }
    // Nothing beta did touched acme's verification: not canceled, no attempt used, no resend.
    const view = await k.get(mine.id);
    assert.deepEqual([view.status, view.attemptsRemaining, view.deliveries.length], ['pending', 5, 1]);
    assert.deepEqual(await checked(k, mine.id, code), { id: mine.id, status: 'approved', valid: true, attemptsRemaining: 4 });
    assert.equal(k.sentTo(to).length, 1);
  });

  test('10 wrong codes across the verifications of one destination lock it: create and check answer 429 destination_locked', async () => {
    const to = idNumber();
    const verifications: Created[] = [];
    for (let i = 0; i < 3; i += 1) verifications.push(await created(k, to, { channel: 'sms' }));
    const [v1, v2, v3] = verifications as [Created, Created, Created];
    const codes = await Promise.all(verifications.map((v) => codeOf(k, v.id)));

    const firstRun: string[] = [];
    for (let i = 0; i < 5; i += 1) firstRun.push((await checked(k, v1.id, wrongCode(codes[0] ?? ''))).status);
    assert.deepEqual(firstRun, ['pending', 'pending', 'pending', 'pending', 'max_attempts']);
    for (let i = 0; i < 4; i += 1) assert.equal((await checked(k, v2.id, wrongCode(codes[1] ?? ''))).status, 'pending');
    assert.equal((await limits(k, to)).lockout.locked, false, '9 wrong codes do not lock');

    // The 10th wrong code (the 5th on v2) locks the destination.
    assert.deepEqual(await checked(k, v2.id, wrongCode(codes[1] ?? '')), { id: v2.id, status: 'max_attempts', valid: false, attemptsRemaining: 0 });
    const state = await limits(k, to);
    assert.equal(state.lockout.locked, true);
    assert.ok(state.lockout.retryAfterSeconds > 3500, JSON.stringify(state.lockout));

    // Even the right code of another pending verification of that destination is refused…
    const lockedCheck = await check(k, v3.id, codes[2] ?? '');
    assertRefused(lockedCheck, 429, 'destination_locked', 'destination_lockout');
    assertRetryAfter(lockedCheck, 3500, 3600);
    // …without using one of its attempts.
    const v3View = await k.get(v3.id);
    assert.deepEqual([v3View.status, v3View.attemptsRemaining], ['pending', 5]);

    // A new code for the destination is refused before anything is stored or sent.
    const refused = await create(k, to, { channel: 'sms' });
    assertRefused(refused, 429, 'destination_locked', 'destination_lockout');
    assertRetryAfter(refused, 3500, 3600);

    // For another tenant that verification still answers like an unknown id (not 429).
    const foreign = await check(k, v3.id, codes[2] ?? '', 'beta');
    const unknown = await check(k, `ver_${randomBytes(12).toString('hex')}`, codes[2] ?? '', 'beta');
    assert.equal(foreign.status, 200);
    assert.deepEqual({ ...foreign.body, id: '<id>' }, { ...unknown.body, id: '<id>' });

    const sentinel = await created(k, idNumber(), { channel: 'sms' });
    await settle(k, [sentinel.id]);
    assert.equal(k.sentTo(to).length, 3, 'three creates before the lock, nothing for the refused one');
  });

  test('a right code before the lock resets the consecutive count', async () => {
    const to = idNumber();
    const verifications: Created[] = [];
    for (let i = 0; i < 3; i += 1) verifications.push(await created(k, to, { channel: 'sms' }));
    const [v1, v2, v3] = verifications as [Created, Created, Created];
    const codes = await Promise.all(verifications.map((v) => codeOf(k, v.id)));

    for (let i = 0; i < 4; i += 1) assert.equal((await checked(k, v1.id, wrongCode(codes[0] ?? ''))).status, 'pending');
    assert.equal((await checked(k, v1.id, codes[0] ?? '')).status, 'approved');
    for (let i = 0; i < 5; i += 1) await checked(k, v2.id, wrongCode(codes[1] ?? ''));
    for (let i = 0; i < 4; i += 1) assert.equal((await checked(k, v3.id, wrongCode(codes[2] ?? ''))).status, 'pending');
    // 13 wrong codes in all, but only 9 since the right one: not locked.
    assert.equal((await limits(k, to)).lockout.locked, false);
    const v4 = await created(k, to, { channel: 'sms' });
    const code4 = await codeOf(k, v4.id);

    // The 10th consecutive wrong code locks it.
    assert.equal((await checked(k, v3.id, wrongCode(codes[2] ?? ''))).status, 'max_attempts');
    assertRefused(await check(k, v4.id, code4), 429, 'destination_locked', 'destination_lockout');
    assertRefused(await create(k, to, { channel: 'sms' }), 429, 'destination_locked', 'destination_lockout');
  });

  test('50 concurrent checks with the right code: exactly one approved', async () => {
    const v = await created(k, idNumber(), { channel: 'sms' });
    const code = await codeOf(k, v.id);
    const answers = await Promise.all(Array.from({ length: 50 }, () => checked(k, v.id, code)));
    const approved = answers.filter((answer) => answer.status === 'approved');
    assert.equal(approved.length, 1, JSON.stringify(answers.map((answer) => answer.status)));
    assert.deepEqual(approved[0], { id: v.id, status: 'approved', valid: true, attemptsRemaining: 4 });
    for (const answer of answers.filter((a) => a.status !== 'approved')) {
      // A consumed verification answers like an unknown or expired one.
      assert.deepEqual(answer, { id: v.id, status: 'expired', valid: false, attemptsRemaining: 0 });
    }
    assert.equal((await k.get(v.id)).status, 'approved');
  });

  test('50 concurrent wrong guesses: the attempts never exceed the limit of 5', async () => {
    const v = await created(k, idNumber(), { channel: 'sms' });
    const code = await codeOf(k, v.id);
    const answers = await Promise.all(Array.from({ length: 50 }, () => checked(k, v.id, wrongCode(code))));
    assert.ok(answers.every((answer) => !answer.valid));
    const pending = answers.filter((answer) => answer.status === 'pending');
    assert.deepEqual(pending.map((answer) => answer.attemptsRemaining).sort(), [1, 2, 3, 4], 'four wrong codes left attempts, one each');
    assert.equal(answers.filter((answer) => answer.status === 'max_attempts').length, 46);
    assert.equal(await k.redis.hget(k.kurir.services.keys.verification(v.id), 'attempts'), '5');
    // The right code afterwards is refused too.
    assert.deepEqual(await checked(k, v.id, code), { id: v.id, status: 'max_attempts', valid: false, attemptsRemaining: 0 });
    const view = await k.get(v.id);
    assert.deepEqual([view.status, view.attemptsRemaining], ['max_attempts', 0]);
  });
});

// =============================================================================================

describe('daily budget (security-budget.policy.yaml)', () => {
  let k: KurirHarness;
  before(async () => {
    k = await startKurir({ KURIR_POLICY_FILE: fixture('budget') });
  });
  after(async () => {
    await k.close();
  });

  const smsCount = () => k.simulator.messages().filter((m) => m.channel === 'sms').length;

  test('2 SMS a day, fail-closed: two go out, the third create (and an SMS resend) is 429 budget_exhausted, the simulator saw 2 SMS', async () => {
    const [a, b, c] = [idNumber(), idNumber(), idNumber()];
    const va = await created(k, a, { channel: 'sms' });
    const vb = await created(k, b, { channel: 'sms' });
    // The worker consumes the budget right before the provider call; the API only peeks.
    await Promise.all([firstMessage(k, va.id), firstMessage(k, vb.id)]);

    const status = await limits(k, c);
    const sms = status.budgets.find((budget) => budget.channel === 'sms');
    const midnight = new Date();
    midnight.setUTCHours(24, 0, 0, 0);
    assert.deepEqual(sms, { channel: 'sms', dailyMessages: 2, used: 2, resetAt: midnight.toISOString() });

    const refused = await create(k, c, { channel: 'sms' });
    assertRefused(refused, 429, 'budget_exhausted', 'budget_sms');
    const untilMidnight = Math.ceil((midnight.getTime() - Date.now()) / 1000);
    assertRetryAfter(refused, untilMidnight - 5, untilMidnight + 1);
    const resend = await k.request('POST', `/v1/verifications/${va.id}/resend`, { body: { channel: 'sms' } });
    assertRefused(resend, 429, 'budget_exhausted', 'budget_sms');

    // Email is not budgeted: it goes through the same workers meanwhile.
    const email = await created(k, `budget.${Date.now()}@example.com`);
    await settle(k, [email.id]);
    assert.deepEqual(k.sentTo(c), []);
    assert.equal(k.sentTo(a).length, 1);
    assert.equal(smsCount(), 2);
  });

  test('WhatsApp fails (…1001) with the SMS budget used up: the SMS fallback makes no provider call; the delivery says budget_exhausted', async () => {
    const before = await counter(k, 'kurir_guard_refusals_total', { tenant: 'acme', rule: 'budget_sms', mode: 'enforce' });
    const to = idNumber('1001');
    const v = await created(k, to);
    assert.deepEqual(v.plan, ['whatsapp', 'sms']);
    const view = await k.waitFor(v.id, (x) => x.deliveries[1]?.errorCode === 'budget_exhausted');
    assert.equal(view.deliveries[0]?.channel, 'whatsapp');
    assert.equal(view.deliveries[0]?.errorCode, '131049');
    assert.equal(view.deliveries[0]?.fellBackTo, 2);
    assert.equal(view.deliveries[1]?.channel, 'sms');
    assert.equal(view.deliveries[1]?.sentAt, null);
    await sleep(SETTLE_MS);
    assert.deepEqual(k.sentTo(to).map((m) => m.channel), ['whatsapp']);
    assert.equal(smsCount(), 2);
    assert.equal(await counter(k, 'kurir_guard_refusals_total', { tenant: 'acme', rule: 'budget_sms', mode: 'enforce' }), before + 1);
  });
});

// =============================================================================================

describe('pumping guard (security-pumping.policy.yaml)', () => {
  let k: KurirHarness;
  const bearer = `Bearer ${ADMIN_TOKEN}`;
  before(async () => {
    k = await startKurir({ KURIR_POLICY_FILE: fixture('pumping'), KURIR_ADMIN_TOKEN: ADMIN_TOKEN });
  });
  after(async () => {
    await k.close();
  });

  async function quarantines(tenant: Tenant): Promise<QuarantineRow[]> {
    const reply = await admin(k, 'GET', `/admin/quarantines?tenant=${tenant}`, bearer);
    assert.equal(reply.status, 200, reply.text);
    return reply.body.quarantines as QuarantineRow[];
  }

  test('enforce: a prefix whose 10 sends are never verified is quarantined: 403 pumping_guard, nothing sent, other prefixes fine, operators can list and release it', async () => {
    const block = freshBlock();
    const pumped = () => idNumber(plainLast4(), block);
    const prefix = `+62812${block}`;
    const quarantinesBefore = await counter(k, 'kurir_pumping_quarantines_total', { tenant: 'acme', dimension: 'prefix', mode: 'enforce' });
    const refusalsBefore = await counter(k, 'kurir_guard_refusals_total', { tenant: 'acme', rule: 'pumping_guard', mode: 'enforce' });

    await aMinuteAgo(k, async () => {
      // Indonesia as a whole converts: 15 verified codes in other prefixes (15 of 25 = 0.6, and
      // still ≥ 0.5 should the few sends below mature too if a minute boundary passes during the
      // test), so only the pumped block, 0 of 10, is judged bad.
      for (let i = 0; i < 15; i += 1) {
        const healthy = await created(k, idNumber(), { channel: 'sms' });
        assert.equal((await checked(k, healthy.id, await codeOf(k, healthy.id))).status, 'approved');
      }
      for (let i = 0; i < 10; i += 1) await created(k, pumped(), { channel: 'sms' });
    });

    // A minute later the 10 unverified sends are judged: the send that trips the guard is itself
    // refused (the guard counts a send before it is queued)…
    const trippingNumber = pumped();
    assertRefused(await create(k, trippingNumber, { channel: 'sms' }), 403, 'destination_not_allowed', 'pumping_guard');
    // …and from then on the block is refused with the generic answer.
    const refusedNumber = pumped();
    const refused = await create(k, refusedNumber, { channel: 'sms' });
    assertRefused(refused, 403, 'destination_not_allowed', 'pumping_guard');
    assert.doesNotMatch(String(refused.body.detail), /pump|conversion|quarantin|prefix/i, 'the answer does not explain the rule');
    assert.equal(refused.headers.get('retry-after'), null);
    assertRefused(await create(k, pumped()), 403, 'destination_not_allowed', 'pumping_guard');
    const otherPrefix = await created(k, idNumber(), { channel: 'sms' });

    await settle(k, [otherPrefix.id]);
    assert.deepEqual(k.sentTo(refusedNumber), []);
    assert.deepEqual(k.sentTo(trippingNumber), []);

    assert.equal(await counter(k, 'kurir_pumping_quarantines_total', { tenant: 'acme', dimension: 'prefix', mode: 'enforce' }), quarantinesBefore + 1);
    assert.equal(await counter(k, 'kurir_pumping_quarantines_total', { tenant: 'acme', dimension: 'country', mode: 'enforce' }), 0);
    assert.equal(await counter(k, 'kurir_guard_refusals_total', { tenant: 'acme', rule: 'pumping_guard', mode: 'enforce' }), refusalsBefore + 3);
    assert.equal((await limits(k, refusedNumber)).quarantined, true);
    assert.equal((await limits(k, idNumber())).quarantined, false);

    // Operators: the quarantine is listed (the country is not), behind the admin token only.
    const listed = await quarantines('acme');
    assert.deepEqual(listed.map((q) => [q.subject.dimension, q.subject.value, q.shadow]), [['prefix', prefix, false]]);
    const until = listed[0]?.until ?? 0;
    assert.ok(until > Date.now() + 590_000 && until <= Date.now() + 600_000, `until ${until}`);
    assert.match(listed[0]?.reason ?? '', /conversion/);
    for (const authorization of [`Bearer ${TENANTS.acme}`, undefined, `Bearer ${ADMIN_TOKEN}x`]) {
      const denied = await admin(k, 'GET', '/admin/quarantines?tenant=acme', authorization);
      assert.equal(denied.status, 401, denied.text);
      assert.equal(denied.body.code, 'unauthorized');
      const release = await admin(k, 'DELETE', `/admin/quarantines?tenant=acme&dimension=prefix&value=${encodeURIComponent(prefix)}`, authorization);
      assert.equal(release.status, 401, release.text);
    }
    assert.equal((await quarantines('acme')).length, 1, 'a refused admin call released nothing');

    const released = await admin(k, 'DELETE', `/admin/quarantines?tenant=acme&dimension=prefix&value=${encodeURIComponent(prefix)}`, bearer);
    assert.equal(released.status, 200, released.text);
    assert.deepEqual(released.body, { released: true });
    assert.deepEqual(await quarantines('acme'), []);
    const again = await created(k, refusedNumber, { channel: 'sms' });
    await firstMessage(k, again.id);
    assert.equal(k.sentTo(refusedNumber).length, 1);
  });

  test('shadow (beta): the same burst is never refused, but counted as mode="shadow"', async () => {
    const block = freshBlock();
    const pumped = () => idNumber(plainLast4(), block);
    const shadowBefore = await counter(k, 'kurir_guard_refusals_total', { tenant: 'beta', rule: 'pumping_guard', mode: 'shadow' });
    const ids: string[] = [];
    await aMinuteAgo(k, async () => {
      for (let i = 0; i < 10; i += 1) ids.push((await created(k, pumped(), { channel: 'sms' }, 'beta')).id);
    });
    ids.push((await created(k, pumped(), { channel: 'sms' }, 'beta')).id); // records the shadow quarantine
    const wouldBeRefused = pumped();
    ids.push((await created(k, wouldBeRefused, { channel: 'sms' }, 'beta')).id);
    ids.push((await created(k, pumped(), { channel: 'sms' }, 'beta')).id);
    await Promise.all(ids.map((id) => firstMessage(k, id)));
    assert.equal(k.sentTo(wouldBeRefused).length, 1);

    assert.ok((await counter(k, 'kurir_pumping_quarantines_total', { tenant: 'beta', dimension: 'prefix', mode: 'shadow' })) >= 1);
    assert.equal(await counter(k, 'kurir_guard_refusals_total', { tenant: 'beta', rule: 'pumping_guard', mode: 'shadow' }), shadowBefore + 2);
    assert.equal(await counter(k, 'kurir_guard_refusals_total', { tenant: 'beta', rule: 'pumping_guard', mode: 'enforce' }), 0);
    assert.equal((await limits(k, pumped(), { tenant: 'beta' })).quarantined, false);
    const listed = await quarantines('beta');
    assert.ok(
      listed.some((q) => q.subject.dimension === 'prefix' && q.subject.value === `+62812${block}` && q.shadow),
      JSON.stringify(listed),
    );
  });
});

// =============================================================================================

describe('silent refusals (security-silent.policy.yaml)', () => {
  let k: KurirHarness;
  before(async () => {
    k = await startKurir({ KURIR_POLICY_FILE: fixture('silent') });
  });
  after(async () => {
    await k.close();
  });

  /** The plaintext code a decoy holds (it was generated like any other, only never sent). */
  async function storedCode(id: string): Promise<string> {
    const sealed = await k.redis.hget(k.kurir.services.keys.verification(id), 'codeSealed');
    assert.ok(sealed !== null, `no sealed code for ${id}`);
    return k.kurir.services.vault.open(id, sealed);
  }

  test('beta (silent): a geo-refused create answers 202 like a real one, sends nothing and never approves', async () => {
    const denied = brNumber();
    // acme is told plainly.
    assertRefused(await create(k, denied), 403, 'destination_not_allowed', 'geo');

    const real = await create(k, idNumber(), {}, 'beta');
    const decoy = await create(k, denied, {}, 'beta');
    assert.equal(decoy.status, 202, decoy.text);
    assert.equal(decoy.headers.get('content-type'), real.headers.get('content-type'));
    assert.deepEqual(Object.keys(decoy.body).sort(), Object.keys(real.body).sort());
    const body = decoy.body as unknown as Created;
    assert.match(body.id, /^ver_[0-9a-f]{28}$/);
    assert.deepEqual([body.status, body.to, body.plan, body.channel, body.attemptsRemaining], ['pending', denied, ['whatsapp', 'sms'], 'whatsapp', 5]);
    assert.equal(decoy.headers.get('location'), `/v1/verifications/${body.id}`);
    assert.equal((await viewAs(k, body.id, 'beta')).status, 'pending');

    // Any code, even the one it holds, is a wrong code until the attempts run out.
    const heldCode = await storedCode(body.id);
    const answers: string[] = [];
    for (const code of [heldCode, '000000', '123456', heldCode, '999999']) answers.push((await checked(k, body.id, code, 'beta')).status);
    assert.deepEqual(answers, ['pending', 'pending', 'pending', 'pending', 'max_attempts']);
    assert.equal((await checked(k, body.id, heldCode, 'beta')).status, 'max_attempts');

    await settle(k, [String(real.body.id)]);
    assert.deepEqual(k.sentTo(denied), []);
  });

  test('beta (silent): a fixed-line number gets a decoy too; rate limits still answer 429', async () => {
    const fixed = '+442079460958';
    assertRefused(await create(k, fixed), 403, 'destination_not_allowed', 'number_type');
    const decoy = await create(k, fixed, {}, 'beta');
    assert.equal(decoy.status, 202, decoy.text);
    const decoyId = String(decoy.body.id);
    assert.equal((await checked(k, decoyId, await storedCode(decoyId), 'beta')).status, 'pending');

    const to = idNumber();
    const first = await created(k, to, {}, 'beta');
    const second = await created(k, to, {}, 'beta');
    const third = await create(k, to, {}, 'beta');
    assertRefused(third, 429, 'rate_limited', 'destination_10m');
    assertRetryAfter(third, 590, 600);
    await settle(k, [first.id, second.id]);
    assert.deepEqual(k.sentTo(fixed), []);
    assert.equal(k.sentTo(to).length, 2);
  });

  test(
    'beta (silent): a resend of a decoy answers like a resend of a real verification and sends nothing',
    async () => {
      const realId = (await created(k, idNumber(), {}, 'beta')).id;
      const decoyId = (await created(k, brNumber(), {}, 'beta')).id;
      const realResend = await k.request('POST', `/v1/verifications/${realId}/resend`, { tenant: 'beta', body: { channel: 'sms' } });
      const decoyResend = await k.request('POST', `/v1/verifications/${decoyId}/resend`, { tenant: 'beta', body: { channel: 'sms' } });
      assert.equal(realResend.status, 202, realResend.text);
      assert.equal(decoyResend.status, realResend.status, decoyResend.text);
      assert.deepEqual({ ...decoyResend.body, id: '<id>' }, { ...realResend.body, id: '<id>' });
    },
  );
});
