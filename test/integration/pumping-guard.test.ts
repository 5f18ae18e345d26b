/**
 * Integration tests of the SMS-pumping guard (common/security/pumping-guard.ts) against the real
 * Redis. Every test runs under a fresh key prefix that `withRedisPrefix` removes afterwards; time
 * is a fake clock passed as `now`, never a sleep.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import {
  PumpingGuard,
  pumpingGuardKeys,
  type GuardSubject,
  type GuardVerdict,
  type PumpingGuardSettings,
} from '../../common/security/pumping-guard.js';
import { capturingLogger } from '../helpers/logger.js';
import { TEST_REDIS_URL, withRedisPrefix } from '../helpers/redis.js';

const TENANT = 'acme';
/** A whole minute, so "n minutes later" lands in a known bucket. */
const T0 = 28_333_334 * 60_000;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const ENFORCE: PumpingGuardSettings = {
  mode: 'enforce',
  windowSeconds: 3600,
  graceSeconds: 120,
  minSends: 100,
  minConversion: 0.2,
  quarantineSeconds: 3600,
};
const SHADOW: PumpingGuardSettings = { ...ENFORCE, mode: 'shadow' };
const OFF: PumpingGuardSettings = { ...ENFORCE, mode: 'off' };

const PUMPED: GuardSubject = { dimension: 'prefix', value: '+62812345' };
const OTHER: GuardSubject = { dimension: 'prefix', value: '+62811111' };
const INDONESIA: GuardSubject = { dimension: 'country', value: 'ID' };

interface Fixture {
  redis: Redis;
  prefix: string;
  guard: PumpingGuard;
}

function withGuard(label: string, body: (f: Fixture) => Promise<void>): Promise<void> {
  return withRedisPrefix(label, async (redis, prefix) => {
    await body({ redis, prefix, guard: new PumpingGuard(redis, { keyPrefix: prefix }) });
  });
}

/** Records `count` sends from `start`, one per `stepMs`, in parallel; returns every new quarantine. */
async function sends(
  guard: PumpingGuard,
  subjects: readonly GuardSubject[],
  settings: PumpingGuardSettings,
  start: number,
  count: number,
  stepMs = 100,
): Promise<GuardVerdict[]> {
  const replies = await Promise.all(
    Array.from({ length: count }, (_, i) => guard.recordSend(TENANT, subjects, settings, start + i * stepMs)),
  );
  return replies.flat();
}

async function approvals(
  guard: PumpingGuard,
  subjects: readonly GuardSubject[],
  settings: PumpingGuardSettings,
  sentAt: number,
  count: number,
  now: number,
): Promise<void> {
  await Promise.all(Array.from({ length: count }, () => guard.recordApproval(TENANT, subjects, settings, sentAt, now)));
}

/**
 * The standard attack: 150 sends to one prefix in 15 s with 2 approvals, then one more send once
 * the burst has matured, which is where the rule trips. Returns that send's time and its verdicts.
 */
async function pump(
  guard: PumpingGuard,
  settings: PumpingGuardSettings,
  subjects: readonly GuardSubject[] = [PUMPED],
): Promise<{ now: number; created: GuardVerdict[] }> {
  assert.deepEqual(await sends(guard, subjects, settings, T0, 150), [], 'an unmatured burst is not judged');
  await approvals(guard, subjects, settings, T0, 2, T0 + 30 * SECOND);
  const now = T0 + 4 * MINUTE;
  return { now, created: await guard.recordSend(TENANT, subjects, settings, now) };
}

describe('pumping guard', () => {
  it('never quarantines a healthy prefix converting at 60 % over 500 sends', () =>
    withGuard('pg-healthy', async ({ guard }) => {
      const created: GuardVerdict[] = [];
      for (let minute = 0; minute < 50; minute += 1) {
        const at = T0 + minute * MINUTE;
        created.push(...(await sends(guard, [PUMPED], ENFORCE, at, 10)));
        await approvals(guard, [PUMPED], ENFORCE, at, 6, at + 30 * SECOND);
      }
      const now = T0 + 50 * MINUTE;
      assert.deepEqual(created, []);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], ENFORCE, now), { kind: 'allow' });
      const stats = await guard.stats(TENANT, PUMPED, ENFORCE, now);
      assert.equal(stats.sends, 500);
      assert.equal(stats.approvals, 300);
      assert.ok(stats.maturedSends >= ENFORCE.minSends, `judged on ${stats.maturedSends} matured sends`);
      assert.equal(stats.conversion, 0.6);
    }));

  it('never judges below minSends, even at 0 % conversion', () =>
    withGuard('pg-minsends', async ({ guard }) => {
      assert.deepEqual(await sends(guard, [PUMPED], ENFORCE, T0, 90), []);
      assert.deepEqual(await sends(guard, [PUMPED], ENFORCE, T0 + 10 * MINUTE, 9), []);
      const now = T0 + 20 * MINUTE;
      assert.deepEqual(await guard.recordSend(TENANT, [PUMPED], ENFORCE, now), []);
      assert.deepEqual(await guard.stats(TENANT, PUMPED, ENFORCE, now), { sends: 100, approvals: 0, maturedSends: 99, conversion: 0 });
      assert.deepEqual(await guard.check(TENANT, [PUMPED], ENFORCE, now), { kind: 'allow' });
      // The 100th matured send is the first judgement, and it trips.
      const [verdict] = await guard.recordSend(TENANT, [PUMPED], ENFORCE, now + 5 * MINUTE);
      assert.equal(verdict?.kind, 'quarantined');
    }));

  it('quarantines a burst of 150 sends with 2 approvals once matured, and only that prefix', () =>
    withGuard('pg-burst', async ({ guard }) => {
      assert.deepEqual(await sends(guard, [OTHER], ENFORCE, T0, 20), []);
      const { now, created } = await pump(guard, ENFORCE);
      const until = now + ENFORCE.quarantineSeconds * SECOND;
      const expected: GuardVerdict = {
        kind: 'quarantined',
        subject: PUMPED,
        until,
        reason: 'conversion 0.01 < 0.2 over 150 sends in 3600 s',
        shadow: false,
      };
      assert.deepEqual(created, [expected]);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], ENFORCE, now + SECOND), expected);
      assert.deepEqual(await guard.check(TENANT, [INDONESIA, OTHER, PUMPED], ENFORCE, now + SECOND), expected);
      assert.deepEqual(await guard.check(TENANT, [OTHER], ENFORCE, now + SECOND), { kind: 'allow' });
      assert.deepEqual(await guard.check('other-tenant', [PUMPED], ENFORCE, now + SECOND), { kind: 'allow' });
      // Still quarantined: further sends (should the caller record any) create nothing new.
      assert.deepEqual(await guard.recordSend(TENANT, [PUMPED], ENFORCE, now + MINUTE), []);
    }));

  it('does not count sends younger than graceSeconds against the ratio', () =>
    withGuard('pg-grace', async ({ guard }) => {
      // A legitimate campaign: 150 sends in 15 s, nobody has typed a code yet.
      assert.deepEqual(await sends(guard, [PUMPED], ENFORCE, T0, 150), []);
      for (const later of [30 * SECOND, 90 * SECOND, 119 * SECOND, 179 * SECOND]) {
        assert.deepEqual(await guard.recordSend(TENANT, [PUMPED], ENFORCE, T0 + later), [], `at +${later / SECOND} s`);
      }
      const beforeTyping = await guard.stats(TENANT, PUMPED, ENFORCE, T0 + 179 * SECOND);
      assert.equal(beforeTyping.maturedSends, 0);
      assert.equal(beforeTyping.conversion, null);
      // Then the users type their codes, late but within the grace, and the burst matures healthy.
      await approvals(guard, [PUMPED], ENFORCE, T0, 120, T0 + 100 * SECOND);
      assert.deepEqual(await guard.recordSend(TENANT, [PUMPED], ENFORCE, T0 + 5 * MINUTE), []);
      const matured = await guard.stats(TENANT, PUMPED, ENFORCE, T0 + 5 * MINUTE);
      assert.equal(matured.maturedSends, 154, 'the burst and the 4 sends after it');
      assert.equal(matured.conversion, 120 / 154);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], ENFORCE, T0 + 5 * MINUTE), { kind: 'allow' });
    }));

  it('judges with approvals that arrive late for matured sends (the figures a send judged with are not kept past them)', () =>
    withGuard('pg-late-approvals', async ({ guard }) => {
      // A 10 s quarantine, so that it ends within the minute in which it was decided.
      const brief = { ...ENFORCE, quarantineSeconds: 10 };
      assert.deepEqual(await sends(guard, [PUMPED], brief, T0, 150), []);
      await approvals(guard, [PUMPED], brief, T0, 25, T0 + 30 * SECOND);
      const decided = T0 + 3 * MINUTE;
      const [quarantine] = await guard.recordSend(TENANT, [PUMPED], brief, decided);
      assert.equal(quarantine?.kind === 'quarantined' ? quarantine.reason : quarantine, 'conversion 0.17 < 0.2 over 150 sends in 3600 s');
      // The users were only slow: 20 more codes typed, for the same matured minute.
      await approvals(guard, [PUMPED], brief, T0, 20, decided + SECOND);
      // Once the quarantine is over (same minute), the next send judges 45 / 150 and lets it be.
      assert.deepEqual(await guard.recordSend(TENANT, [PUMPED], brief, decided + 15 * SECOND), []);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], brief, decided + 16 * SECOND), { kind: 'allow' });
      assert.equal((await guard.stats(TENANT, PUMPED, brief, decided + 16 * SECOND)).conversion, 45 / 150);
    }));

  it('ends the quarantine after quarantineSeconds', () =>
    withGuard('pg-expiry', async ({ guard }) => {
      const { now } = await pump(guard, ENFORCE);
      const until = now + ENFORCE.quarantineSeconds * SECOND;
      assert.equal((await guard.check(TENANT, [PUMPED], ENFORCE, until - 1)).kind, 'quarantined');
      assert.deepEqual(await guard.check(TENANT, [PUMPED], ENFORCE, until), { kind: 'allow' });
      assert.deepEqual(await guard.listQuarantines(TENANT, until), []);
    }));

  it('in shadow mode reports shadow: true consistently and creates the marker once', () =>
    withGuard('pg-shadow', async ({ guard }) => {
      const { now, created } = await pump(guard, SHADOW);
      assert.equal(created.length, 1);
      const [marker] = created;
      assert.ok(marker?.kind === 'quarantined' && marker.shadow);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], SHADOW, now + SECOND), marker);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], SHADOW, now + 10 * MINUTE), marker);
      assert.deepEqual(await guard.recordSend(TENANT, [PUMPED], SHADOW, now + MINUTE), [], 'reported once');
      // Switching to enforce: the marker alone refuses nothing; the next send enforces.
      const shadowRead = await guard.check(TENANT, [PUMPED], ENFORCE, now + 2 * MINUTE);
      assert.ok(shadowRead.kind === 'quarantined' && shadowRead.shadow);
      const [enforced] = await guard.recordSend(TENANT, [PUMPED], ENFORCE, now + 3 * MINUTE);
      assert.ok(enforced?.kind === 'quarantined' && !enforced.shadow);
      const refused = await guard.check(TENANT, [PUMPED], ENFORCE, now + 4 * MINUTE);
      assert.ok(refused.kind === 'quarantined' && !refused.shadow);
      // And an enforced quarantine read under shadow mode is only reported.
      const observed = await guard.check(TENANT, [PUMPED], SHADOW, now + 4 * MINUTE);
      assert.ok(observed.kind === 'quarantined' && observed.shadow);
    }));

  it('release lifts the quarantine and forgets the overruled counts', () =>
    withGuard('pg-release', async ({ guard }) => {
      const { now } = await pump(guard, ENFORCE);
      assert.equal(await guard.release(TENANT, PUMPED), true);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], ENFORCE, now + SECOND), { kind: 'allow' });
      assert.deepEqual(await guard.listQuarantines(TENANT, now + SECOND), []);
      assert.equal(await guard.release(TENANT, PUMPED), false);
      assert.deepEqual(await guard.recordSend(TENANT, [PUMPED], ENFORCE, now + MINUTE), []);
      assert.equal((await guard.stats(TENANT, PUMPED, ENFORCE, now + MINUTE)).sends, 1);
    }));

  it('lists the live quarantines of a tenant, soonest first, and trims ended ones', () =>
    withGuard('pg-list', async ({ guard, redis, prefix }) => {
      const { now } = await pump(guard, ENFORCE);
      const short = { ...ENFORCE, quarantineSeconds: 600 };
      assert.deepEqual(await sends(guard, [OTHER], short, T0, 120), []);
      const [second] = await guard.recordSend(TENANT, [OTHER], short, now);
      assert.equal(second?.kind, 'quarantined');
      assert.deepEqual(await guard.listQuarantines(TENANT, now + SECOND), [
        { subject: OTHER, until: now + 600 * SECOND, reason: 'conversion 0.00 < 0.2 over 120 sends in 3600 s', shadow: false },
        { subject: PUMPED, until: now + 3600 * SECOND, reason: 'conversion 0.01 < 0.2 over 150 sends in 3600 s', shadow: false },
      ]);
      assert.deepEqual(await guard.listQuarantines('other-tenant', now + SECOND), []);
      const later = await guard.listQuarantines(TENANT, now + 601 * SECOND);
      assert.deepEqual(later.map((q) => q.subject), [PUMPED]);
      assert.equal(await redis.zcard(pumpingGuardKeys(prefix).index(TENANT)), 1, 'ended quarantines leave the index');
    }));

  it('quarantines a country pumped across many prefixes, none of which reaches minSends', () =>
    withGuard('pg-country', async ({ guard }) => {
      const created: GuardVerdict[] = [];
      for (let block = 0; block < 15; block += 1) {
        const prefix: GuardSubject = { dimension: 'prefix', value: `+6281200${String(block).padStart(2, '0')}` };
        created.push(...(await sends(guard, [prefix, INDONESIA], ENFORCE, T0 + block * SECOND, 10, 10)));
      }
      assert.deepEqual(created, []);
      const now = T0 + 4 * MINUTE;
      const fresh: GuardSubject = { dimension: 'prefix', value: '+62812999' };
      const tripped = await guard.recordSend(TENANT, [fresh, INDONESIA], ENFORCE, now);
      assert.deepEqual(tripped.map((v) => v.kind === 'quarantined' && v.subject), [INDONESIA]);
      const verdict = await guard.check(TENANT, [{ dimension: 'prefix', value: '+62813000' }, INDONESIA], ENFORCE, now + SECOND);
      assert.ok(verdict.kind === 'quarantined' && !verdict.shadow);
      assert.deepEqual(verdict.subject, INDONESIA);
      assert.match(verdict.reason, /^conversion 0\.00 < 0\.2 over 150 sends in 3600 s$/);
      assert.deepEqual(await guard.check(TENANT, [{ dimension: 'country', value: 'MY' }], ENFORCE, now), { kind: 'allow' });
    }));

  it('trims buckets older than the window, so memory stays bounded over 3 hours', () =>
    withGuard('pg-trim', async ({ guard, redis, prefix }) => {
      const counts = pumpingGuardKeys(prefix).counts(TENANT, PUMPED);
      const bound = 2 * (ENFORCE.windowSeconds / 60 + 1);
      let most = 0;
      for (let minute = 0; minute < 180; minute += 1) {
        const at = T0 + minute * MINUTE;
        assert.deepEqual(await sends(guard, [PUMPED], ENFORCE, at, 2), []);
        await guard.recordApproval(TENANT, [PUMPED], ENFORCE, at, at + 20 * SECOND);
        most = Math.max(most, await redis.hlen(counts));
      }
      assert.ok(most <= bound, `${most} fields, at most ${bound} expected`);
      assert.ok(most >= bound - 2, `${most} fields: the window is kept, not over-trimmed`);
      const now = T0 + 180 * MINUTE;
      const stats = await guard.stats(TENANT, PUMPED, ENFORCE, now);
      assert.ok(stats.sends <= 2 * 61 && stats.sends >= 2 * 60, `${stats.sends} sends in the window`);
      const ttl = await redis.pttl(counts);
      assert.ok(ttl > ENFORCE.windowSeconds * SECOND && ttl <= ENFORCE.windowSeconds * SECOND + 2 * MINUTE, `pttl ${ttl}`);
      // An approval for a send older than the window creates no stray field.
      await guard.recordApproval(TENANT, [PUMPED], ENFORCE, T0, now);
      assert.equal(await redis.hexists(counts, `a:${T0 / MINUTE}`), 0);
    }));

  it('counts approvals only against recorded sends of that minute', () =>
    withGuard('pg-approval-cap', async ({ guard }) => {
      await sends(guard, [PUMPED], ENFORCE, T0, 3);
      await approvals(guard, [PUMPED], ENFORCE, T0, 5, T0 + 30 * SECOND);
      await approvals(guard, [PUMPED], ENFORCE, T0 + 3 * MINUTE, 1, T0 + 3 * MINUTE);
      assert.equal((await guard.stats(TENANT, PUMPED, ENFORCE, T0 + 10 * MINUTE)).approvals, 3);
    }));

  it('batches approvals: one script per tenant at the flush, counting as the single approvals would', () =>
    withRedisPrefix('pg-approval-batch', async (redis, prefix) => {
      const lines: Record<string, unknown>[] = [];
      const batched = new PumpingGuard(redis, { keyPrefix: prefix, flushIntervalMs: 60_000, logger: capturingLogger(lines) });
      const now = T0 + 30 * SECOND;
      await sends(batched, [PUMPED, INDONESIA], ENFORCE, T0, 3);
      await sends(batched, [OTHER], ENFORCE, T0 + MINUTE, 2);
      // 5 approvals for 3 sends of one minute (two subjects), 1 for the other prefix's bucket.
      await approvals(batched, [PUMPED, INDONESIA], ENFORCE, T0, 5, now);
      await batched.recordApproval(TENANT, [OTHER], ENFORCE, T0 + MINUTE, now + MINUTE);
      const counts = pumpingGuardKeys(prefix).counts(TENANT, PUMPED);
      assert.equal(await redis.hexists(counts, `a:${T0 / MINUTE}`), 0, 'nothing written before the flush');

      await batched.flush();
      const later = T0 + 10 * MINUTE;
      assert.equal((await batched.stats(TENANT, PUMPED, ENFORCE, later)).approvals, 3, 'capped at the sends of the bucket');
      assert.equal((await batched.stats(TENANT, INDONESIA, ENFORCE, later)).approvals, 3);
      assert.equal((await batched.stats(TENANT, OTHER, ENFORCE, later)).approvals, 1);

      // close() writes what the timer has not yet; nothing is left to write twice.
      await batched.recordApproval(TENANT, [OTHER], ENFORCE, T0 + MINUTE, now + MINUTE);
      await batched.close();
      await batched.flush();
      assert.equal((await batched.stats(TENANT, OTHER, ENFORCE, later)).approvals, 2);
      assert.deepEqual(lines, []);
    }));

  it('logs a batch that could not be written, and drops it', async () => {
    const lines: Record<string, unknown>[] = [];
    const broken = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    const guard = new PumpingGuard(broken, { keyPrefix: 'kt-pg-broken', flushIntervalMs: 60_000, logger: capturingLogger(lines) });
    await guard.recordApproval(TENANT, [PUMPED], ENFORCE, T0, T0 + SECOND);
    await guard.close();
    broken.disconnect();
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]?.msg, 'pumping guard approvals could not be recorded');
  });

  it('does nothing in mode off', () =>
    withGuard('pg-off', async ({ guard }) => {
      const { now } = await pump(guard, ENFORCE);
      assert.deepEqual(await guard.check(TENANT, [PUMPED], OFF, now + SECOND), { kind: 'allow' });
      assert.deepEqual(await guard.recordSend(TENANT, [OTHER], OFF, now), []);
      await guard.recordApproval(TENANT, [OTHER], OFF, now, now);
      assert.deepEqual(await guard.stats(TENANT, OTHER, ENFORCE, now), { sends: 0, approvals: 0, maturedSends: 0, conversion: null });
    }));

  it('counts concurrent sends from several connections exactly and quarantines once', () =>
    withGuard('pg-concurrency', async ({ guard, prefix }) => {
      const clients = Array.from({ length: 5 }, () => new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 }));
      try {
        const guards = [guard, ...clients.map((client) => new PumpingGuard(client, { keyPrefix: prefix }))];
        const burst = await Promise.all(guards.map((g) => Promise.all(Array.from({ length: 40 }, () => g.recordSend(TENANT, [PUMPED, INDONESIA], ENFORCE, T0)))));
        assert.deepEqual(burst.flat(2), []);
        assert.equal((await guard.stats(TENANT, PUMPED, ENFORCE, T0)).sends, 240);
        assert.equal((await guard.stats(TENANT, INDONESIA, ENFORCE, T0)).sends, 240);
        const now = T0 + 4 * MINUTE;
        const tripped = await Promise.all(guards.map((g) => Promise.all(Array.from({ length: 10 }, () => g.recordSend(TENANT, [PUMPED], ENFORCE, now)))));
        assert.equal(tripped.flat(2).length, 1, 'one quarantine, reported by exactly one send');
        assert.equal((await guard.stats(TENANT, PUMPED, ENFORCE, now)).sends, 300);
      } finally {
        await Promise.all(clients.map((client) => client.quit()));
      }
    }));
});
