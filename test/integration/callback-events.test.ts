/**
 * The callback side of the store and the event emitter against the real Redis: the EXPIRE and
 * CLAIM_EVENT scripts, and which events `VerificationEvents` queues (once each) on a real
 * `callbacks` queue. Fresh key prefix per test; time is a fake clock passed as `now`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { VerificationEvents } from '../../common/callbacks/verification-events.js';
import { dispatchFallback } from '../../common/delivery/fallback.js';
import { QUEUES, callbackJobSchema, jobIds } from '../../common/jobs/catalogue.js';
import { JobQueues } from '../../common/jobs/queues.js';
import { createMetrics } from '../../common/observability/metrics.js';
import { createKeySpace, type KeySpace } from '../../common/store/keys.js';
import { VerificationStore, type NewVerification } from '../../common/store/verification.store.js';
import { withRedisPrefix } from '../helpers/redis.js';

const T0 = 1_700_000_000_000;
const LIFETIME_MS = 10 * 60_000;
const RETENTION_MS = 60_000;
const HOOK = 'https://hooks.example.com/kurir';

interface Fixture {
  redis: Redis;
  keys: KeySpace;
  store: VerificationStore;
  queues: JobQueues;
  events: VerificationEvents;
  clock: { now: number };
}

function newVerification(overrides: Partial<NewVerification> = {}): NewVerification {
  const id = `ver_${randomBytes(8).toString('hex')}`;
  return {
    id,
    tenant: 'acme',
    to: '+628123456789',
    destinationMac: 'dmac-test',
    kind: 'phone',
    country: 'ID',
    purpose: 'login',
    locale: 'id',
    plan: ['whatsapp', 'sms'],
    firstChannel: 'whatsapp',
    firstReason: 'initial',
    maxAttempts: 5,
    codeLength: 6,
    deliveryTimeoutSeconds: 30,
    codeMac: 'mac',
    codeSealed: 'sealed',
    createdAt: T0,
    expiresAt: T0 + LIFETIME_MS,
    fingerprint: 'fp',
    callbackUrl: HOOK,
    ...overrides,
  };
}

function withFixture(label: string, body: (fixture: Fixture) => Promise<void>): Promise<void> {
  return withRedisPrefix(label, async (redis, prefix) => {
    const keys = createKeySpace(prefix);
    const store = new VerificationStore(redis, keys, RETENTION_MS);
    const queues = new JobQueues(keys, redis);
    const clock = { now: T0 + 1000 };
    const events = new VerificationEvents({ store, queues, logger: pino({ level: 'silent' }), now: () => clock.now });
    try {
      await body({ redis, keys, store, queues, events, clock });
    } finally {
      await queues.close();
    }
  });
}

async function seed(store: VerificationStore, overrides: Partial<NewVerification> = {}): Promise<string> {
  const record = newVerification(overrides);
  assert.deepEqual(await store.create(record), { created: true });
  return record.id;
}

/** The callback jobs queued so far, as the worker would parse them. */
async function callbackJobs(queues: JobQueues) {
  const jobs = await queues.queue(QUEUES.callbacks).getJobs(['waiting', 'delayed', 'active', 'completed', 'failed']);
  return jobs.map((job) => ({ id: job.id, ...callbackJobSchema.parse(job.data) })).sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

describe('store.expire', () => {
  it('ends a pending verification at expiresAt, drops its sealed code and shortens its life', async () => {
    await withFixture('cb-expire', async ({ redis, keys, store }) => {
      const id = await seed(store);
      assert.deepEqual(await store.expire(id, T0 + LIFETIME_MS - 1), { kind: 'not_due', msLeft: 1 });
      assert.equal(await redis.hget(keys.verification(id), 'status'), 'pending');
      assert.deepEqual(await store.expire(id, T0 + LIFETIME_MS), {
        kind: 'expired',
        tenant: 'acme',
        // What the expiry handler reports the ending with, read in the same step.
        ending: { purpose: 'login', country: 'ID', to: '+628123456789', kind: 'phone', createdAt: T0, channel: 'whatsapp', hasCallback: true },
      });
      const silent = await seed(store, { callbackUrl: undefined, kind: 'email', to: 'a@example.com', country: undefined, plan: ['email'], firstChannel: 'email' });
      const quiet = await store.expire(silent, T0 + LIFETIME_MS);
      assert.deepEqual(quiet.kind === 'expired' ? quiet.ending : undefined, { purpose: 'login', country: undefined, to: 'a@example.com', kind: 'email', createdAt: T0, channel: 'email', hasCallback: false });
      const fields = await redis.hgetall(keys.verification(id));
      assert.equal(fields.status, 'expired');
      assert.equal(fields.endedAt, String(T0 + LIFETIME_MS));
      assert.equal(fields.codeSealed, undefined);
      assert.ok((await redis.pttl(keys.verification(id))) <= RETENTION_MS);
      assert.deepEqual(await store.expire(id, T0 + LIFETIME_MS + 5), { kind: 'not_pending', status: 'expired' }, 'a second run changes nothing');
    });
  });

  it('leaves approved and canceled verifications alone, and answers missing for an unknown id', async () => {
    await withFixture('cb-expire-ended', async ({ store }) => {
      const canceled = await seed(store);
      assert.deepEqual(await store.cancel(canceled, 'acme', T0 + 5), { kind: 'canceled' });
      assert.deepEqual(await store.expire(canceled, T0 + LIFETIME_MS), { kind: 'not_pending', status: 'canceled' });
      assert.deepEqual(await store.expire('ver_00000000000000', T0), { kind: 'missing' });
    });
  });
});

describe('store.claimEvent and the callback URL', () => {
  it('stores the URL as cb and shows it on get; a verification without one has none', async () => {
    await withFixture('cb-field', async ({ redis, keys, store }) => {
      const withHook = await seed(store);
      const without = await seed(store, { callbackUrl: undefined });
      assert.equal(await redis.hget(keys.verification(withHook), 'cb'), HOOK);
      assert.equal((await store.get(withHook))?.callbackUrl, HOOK);
      assert.equal(await redis.hexists(keys.verification(without), 'cb'), 0);
      assert.equal('callbackUrl' in ((await store.get(without)) ?? {}), false);
    });
  });

  it('one owner claims, may claim again (its retry), and nobody else can', async () => {
    await withFixture('cb-claim', async ({ store }) => {
      const id = await seed(store);
      assert.equal(await store.claimEvent(id, 'cbDelivered', 'receipt-a'), 'claimed');
      assert.equal(await store.claimEvent(id, 'cbDelivered', 'receipt-a'), 'claimed');
      assert.equal(await store.claimEvent(id, 'cbDelivered', 'receipt-b'), 'taken');
      const without = await seed(store, { callbackUrl: undefined });
      assert.equal(await store.claimEvent(without, 'cbDelivered', 'receipt-a'), 'none');
      assert.equal(await store.claimEvent('ver_00000000000000', 'cbDelivered', 'receipt-a'), 'none');
    });
  });
});

describe('VerificationEvents', () => {
  it('delivered: once per verification, whichever delivery and receipt comes first', async () => {
    await withFixture('cb-delivered', async ({ store, queues, events }) => {
      const id = await seed(store);
      await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 500, providerMessageId: 'wamid.1' }, T0 + 500);
      await events.delivered(id, 1, 'receipt-a');
      await events.delivered(id, 1, 'receipt-a');
      await events.delivered(id, 1, 'receipt-b');
      const jobs = await callbackJobs(queues);
      assert.deepEqual(jobs.map((job) => job.id), [jobIds.callback(id, 'verification.delivered')]);
      const [job] = jobs;
      assert.equal(job?.tenant, 'acme');
      assert.equal(job?.url, HOOK);
      assert.equal(job?.event.type, 'verification.delivered');
      assert.deepEqual(job?.event.data, { delivery: 1, channel: 'whatsapp', status: 'delivered', deliveredAt: new Date(T0 + 500).toISOString() });
      assert.deepEqual(job?.event.verification, { id, status: 'pending', purpose: 'login', to: '+628123456789', channel: 'whatsapp', deliveries: 1 });
    });
  });

  it('fallback and failed through dispatchFallback: one event per fallback, failed when the plan is exhausted', async () => {
    await withFixture('cb-fallback', async ({ store, queues, clock }) => {
      const deps = { store, queues, metrics: createMetrics({ role: 'test', collectDefaults: false }), logger: pino({ level: 'silent' }), now: () => clock.now };
      const id = await seed(store);
      const first = await store.fallback(id, 1, 'failed', T0 + 1000, '131049');
      await dispatchFallback(first, { verificationId: id, from: 'whatsapp', reason: 'failed' }, deps);
      // A timer racing the failure gets `already`: re-dispatched, but the event is not queued twice.
      const raced = await store.fallback(id, 1, 'timeout', T0 + 1100);
      assert.equal(raced.kind, 'already');
      await dispatchFallback(raced, { verificationId: id, from: 'whatsapp', reason: 'timeout' }, deps);
      const last = await store.fallback(id, 2, 'failed', T0 + 2000, '30008');
      assert.deepEqual(last, { kind: 'exhausted' });
      await dispatchFallback(last, { verificationId: id, from: 'sms', reason: 'failed' }, deps);
      await dispatchFallback(await store.fallback(id, 2, 'failed', T0 + 2100, '30008'), { verificationId: id, from: 'sms', reason: 'failed' }, deps);

      const jobs = await callbackJobs(queues);
      assert.deepEqual(jobs.map((job) => job.id), [jobIds.callback(id, 'verification.failed', 2), jobIds.callback(id, 'verification.fallback', 2)]);
      const byType = new Map(jobs.map((job) => [job.event.type, job.event]));
      assert.deepEqual(byType.get('verification.fallback')?.data, { delivery: 2, from: 'whatsapp', to: 'sms', reason: 'failed' });
      assert.deepEqual(byType.get('verification.failed')?.data, { delivery: 2, channel: 'sms', errorCode: '30008' });
    });
  });

  it('a resend is not a fallback, and a plan that reached the user is not reported failed', async () => {
    await withFixture('cb-resend', async ({ store, queues, events }) => {
      const id = await seed(store, { plan: ['sms'], firstChannel: 'sms' });
      await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 500, providerMessageId: 'sms-1' }, T0 + 500);
      const resend = await store.resend(id, 'acme', undefined, T0 + 60_000, { cooldownMs: 30_000, maxSends: 5 });
      assert.equal(resend.kind, 'ok');
      await events.fallback(id, 2);
      assert.deepEqual(await store.fallback(id, 2, 'failed', T0 + 61_000, '30008'), { kind: 'exhausted' });
      await events.failed(id);
      assert.deepEqual(await callbackJobs(queues), []);
    });
  });

  it('approved and expired come from the caller that ended the verification; nothing without a callback URL', async () => {
    await withFixture('cb-ended', async ({ store, queues, events }) => {
      const id = await seed(store);
      assert.equal((await store.expire(id, T0 + LIFETIME_MS)).kind, 'expired');
      const expired = await store.get(id);
      assert.ok(expired !== undefined);
      await events.ended(expired, 'expired');
      await events.ended(expired, 'expired');
      const silent = await seed(store, { callbackUrl: undefined });
      const plain = await store.get(silent);
      assert.ok(plain !== undefined);
      await events.ended(plain, 'approved');
      const jobs = await callbackJobs(queues);
      assert.deepEqual(jobs.map((job) => job.id), [jobIds.callback(id, 'verification.expired')]);
      assert.equal(jobs[0]?.event.verification.status, 'expired');
      assert.deepEqual(jobs[0]?.event.data, { expiresAt: new Date(T0 + LIFETIME_MS).toISOString() });
    });
  });
});
