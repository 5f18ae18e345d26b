/**
 * Integration tests of the send limiter (common/security/rate-limiter.ts and its Lua script)
 * against the real Redis. Every test runs under a fresh key prefix that `withRedisPrefix`
 * removes afterwards; time is a fake clock passed as `now`, never a sleep.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { limitKey, SendLimiter, type LimitRule, type LimitStatus } from '../../common/security/rate-limiter.js';
import { keysOf, TEST_REDIS_URL, withRedisPrefix } from '../helpers/redis.js';

const T0 = 1_700_000_000_000;
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const TENANT = 'acme';

type WindowRule = Extract<LimitRule, { kind: 'window' }>;

function windowRule(prefix: string, name: string, limit: number, windowMs: number): WindowRule {
  return { kind: 'window', name, key: limitKey(prefix, TENANT, name, 'mac-dest'), limit, windowMs };
}

function distinctRule(prefix: string, member: string, limit = 10, windowMs = 10 * MINUTE): LimitRule {
  return { kind: 'distinct', name: 'ip', key: limitKey(prefix, TENANT, 'ip', '203.0.113.7'), member, limit, windowMs };
}

function backoffRule(prefix: string, baseMs = 30 * SECOND, maxMs = 120 * SECOND, windowMs = 60 * MINUTE): LimitRule {
  return { kind: 'backoff', name: 'cooldown', key: limitKey(prefix, TENANT, 'cooldown', 'mac-dest'), baseMs, maxMs, windowMs };
}

async function statusOf(limiter: SendLimiter, rule: LimitRule, now: number): Promise<LimitStatus> {
  const [status] = await limiter.peek([rule], now);
  assert.ok(status !== undefined);
  return status;
}

describe('window rule', () => {
  it('is an exact sliding window: the 4th of 3 per 10 min waits until the 1st leaves', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rules = [windowRule(prefix, 'dest10m', 3, 10 * MINUTE)];
      for (const [i, at] of [0, 1, 2].entries()) {
        assert.deepEqual(await limiter.consume(rules, T0 + at * MINUTE, `e${i}`), { allowed: true });
      }
      assert.deepEqual(await limiter.consume(rules, T0 + 3 * MINUTE, 'e3'), {
        allowed: false, rule: 'dest10m', retryAfterMs: 7 * MINUTE,
      });
      assert.deepEqual(await limiter.consume(rules, T0 + 10 * MINUTE - 1, 'e3'), {
        allowed: false, rule: 'dest10m', retryAfterMs: 1,
      });
      assert.deepEqual(await limiter.consume(rules, T0 + 10 * MINUTE, 'e3'), { allowed: true });
      // Now full again with events at +1, +2, +10 min: the next slot frees when +1 min leaves.
      assert.deepEqual(await limiter.consume(rules, T0 + 10 * MINUTE, 'e4'), {
        allowed: false, rule: 'dest10m', retryAfterMs: MINUTE,
      });
    });
  });

  it('peek reports used, remaining and resetAt without recording', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rule = windowRule(prefix, 'dest10m', 3, 10 * MINUTE);
      assert.deepEqual(await statusOf(limiter, rule, T0), {
        rule: 'dest10m', limit: 3, used: 0, remaining: 3, resetAt: null, retryAfterMs: 0,
      });
      await limiter.consume([rule], T0, 'e0');
      await limiter.consume([rule], T0 + MINUTE, 'e1');
      assert.deepEqual(await statusOf(limiter, rule, T0 + 2 * MINUTE), {
        rule: 'dest10m', limit: 3, used: 2, remaining: 1, resetAt: T0 + 10 * MINUTE, retryAfterMs: 0,
      });
      await limiter.consume([rule], T0 + 2 * MINUTE, 'e2');
      assert.deepEqual(await statusOf(limiter, rule, T0 + 4 * MINUTE), {
        rule: 'dest10m', limit: 3, used: 3, remaining: 0, resetAt: T0 + 10 * MINUTE, retryAfterMs: 6 * MINUTE,
      });
      // Peeking twice changes nothing, and expired entries are not counted even untrimmed.
      assert.equal((await statusOf(limiter, rule, T0 + 4 * MINUTE)).used, 3);
      assert.deepEqual(await statusOf(limiter, rule, T0 + 11 * MINUTE + 1), {
        rule: 'dest10m', limit: 3, used: 1, remaining: 2, resetAt: T0 + 12 * MINUTE, retryAfterMs: 0,
      });
      assert.deepEqual(await statusOf(limiter, rule, T0 + 12 * MINUTE), {
        rule: 'dest10m', limit: 3, used: 0, remaining: 3, resetAt: null, retryAfterMs: 0,
      });
    });
  });
});

describe('distinct rule', () => {
  it('allows 10 destinations per IP, refuses an 11th new one, and always allows a seen one', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      for (let i = 0; i < 10; i += 1) {
        const decision = await limiter.consume([distinctRule(prefix, `dest-${i}`)], T0 + i * SECOND, `e${i}`);
        assert.deepEqual(decision, { allowed: true }, `destination ${i}`);
      }
      assert.deepEqual(await limiter.consume([distinctRule(prefix, 'dest-new')], T0 + MINUTE, 'e10'), {
        allowed: false, rule: 'ip', retryAfterMs: 9 * MINUTE,
      });
      // A repeat does not add a member and refreshes when it was last seen.
      assert.deepEqual(await limiter.consume([distinctRule(prefix, 'dest-0')], T0 + 2 * MINUTE, 'e11'), { allowed: true });
      const status = await statusOf(limiter, distinctRule(prefix, 'dest-new'), T0 + 2 * MINUTE);
      assert.equal(status.used, 10);
      assert.equal(status.remaining, 0);
      // dest-0 was seen again at +2 min, so dest-1 (at +1 s) is now the oldest to leave.
      assert.equal(status.retryAfterMs, 10 * MINUTE + SECOND - 2 * MINUTE);
      assert.equal((await statusOf(limiter, distinctRule(prefix, 'dest-3'), T0 + 2 * MINUTE)).retryAfterMs, 0);
      assert.deepEqual(
        await limiter.consume([distinctRule(prefix, 'dest-new')], T0 + 10 * MINUTE + SECOND, 'e12'),
        { allowed: true },
      );
    });
  });
});

describe('backoff rule', () => {
  it('spaces sends 30 s, 60 s, 120 s apart and caps the gap at maxMs', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rules = [backoffRule(prefix)];
      assert.deepEqual(await limiter.consume(rules, T0, 'e1'), { allowed: true });
      let at = T0;
      for (const [n, gap] of [30, 60, 120, 120, 120].entries()) {
        const eventId = `e${n + 2}`;
        assert.deepEqual(await limiter.consume(rules, at + gap * SECOND - 1, eventId), {
          allowed: false, rule: 'cooldown', retryAfterMs: 1,
        }, `event ${n + 2} one ms early`);
        at += gap * SECOND;
        assert.deepEqual(await limiter.consume(rules, at, eventId), { allowed: true }, `event ${n + 2} on time`);
      }
      assert.deepEqual(await statusOf(limiter, rules[0]!, at + SECOND), {
        rule: 'cooldown', limit: null, used: 6, remaining: null, resetAt: at + 120 * SECOND, retryAfterMs: 119 * SECOND,
      });
    });
  });

  it('counts only the events still in the window, so departures while waiting shorten the wait', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rules = [backoffRule(prefix, 30 * SECOND, 5 * MINUTE, 10 * MINUTE)];
      // Gaps 30, 60, 120, 240 s: events at 0, 30, 90, 210, 450 s.
      for (const [i, s] of [0, 30, 90, 210, 450].entries()) {
        assert.deepEqual(await limiter.consume(rules, T0 + s * SECOND, `e${i}`), { allowed: true });
      }
      // A 6th event would need 300 s after 450 s (= 750 s); but at 630 s the events at 0 and 30 s
      // have left, the next is only the 4th in the window and needs 120 s, long past.
      assert.deepEqual(await limiter.consume(rules, T0 + 460 * SECOND, 'e5'), {
        allowed: false, rule: 'cooldown', retryAfterMs: 170 * SECOND,
      });
      assert.equal((await limiter.consume(rules, T0 + 630 * SECOND - 1, 'e5')).allowed, false);
      assert.deepEqual(await limiter.consume(rules, T0 + 630 * SECOND, 'e5'), { allowed: true });
    });
  });

  it('starts over at the base gap once the window is empty', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rules = [backoffRule(prefix, 30 * SECOND, 120 * SECOND, 10 * MINUTE)];
      await limiter.consume(rules, T0, 'e1');
      await limiter.consume(rules, T0 + 30 * SECOND, 'e2');
      await limiter.consume(rules, T0 + 90 * SECOND, 'e3');
      assert.deepEqual(await statusOf(limiter, rules[0]!, T0 + 100 * SECOND), {
        rule: 'cooldown', limit: null, used: 3, remaining: null, resetAt: T0 + 210 * SECOND, retryAfterMs: 110 * SECOND,
      });
      const empty = T0 + 90 * SECOND + 10 * MINUTE;
      assert.deepEqual(await statusOf(limiter, rules[0]!, empty), {
        rule: 'cooldown', limit: null, used: 0, remaining: null, resetAt: null, retryAfterMs: 0,
      });
      await limiter.consume(rules, empty, 'e4');
      assert.deepEqual(await limiter.consume(rules, empty + 30 * SECOND, 'e5'), { allowed: true });
    });
  });
});

describe('several rules in one call', () => {
  it('is all-or-nothing: a refusing rule leaves every other rule unchanged', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const day = windowRule(prefix, 'dest24h', 10, 24 * 60 * MINUTE);
      const short = windowRule(prefix, 'dest10m', 1, 10 * MINUTE);
      const rulesFor = (member: string): LimitRule[] => [day, short, distinctRule(prefix, member), backoffRule(prefix)];
      assert.deepEqual(await limiter.consume(rulesFor('dest-a'), T0, 'e1'), { allowed: true });
      const before = await limiter.peek(rulesFor('dest-b'), T0 + MINUTE);

      assert.deepEqual(await limiter.consume(rulesFor('dest-b'), T0 + 5 * MINUTE, 'e2'), {
        allowed: false, rule: 'dest10m', retryAfterMs: 5 * MINUTE,
      });
      const after = await limiter.peek(rulesFor('dest-b'), T0 + MINUTE);
      assert.deepEqual(after, before);
      assert.deepEqual(after.map((s) => s.used), [1, 1, 1, 1]);
      assert.equal(await redis.zscore(day.key, 'e2'), null);
    });
  });

  it('reports the refusing rule with the longest wait', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rules = [backoffRule(prefix), windowRule(prefix, 'dest10m', 1, 10 * MINUTE)];
      await limiter.consume(rules, T0, 'e1');
      // cooldown wants 20 s more, dest10m 9 min 40 s: the client must wait the longer one.
      assert.deepEqual(await limiter.consume(rules, T0 + 10 * SECOND, 'e2'), {
        allowed: false, rule: 'dest10m', retryAfterMs: 10 * MINUTE - 10 * SECOND,
      });
      assert.deepEqual(await limiter.consume([...rules].reverse(), T0 + 10 * SECOND, 'e2'), {
        allowed: false, rule: 'dest10m', retryAfterMs: 10 * MINUTE - 10 * SECOND,
      });
    });
  });

  it('lets exactly the limit through 200 concurrent consumes from several connections', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const connections = Array.from({ length: 4 }, () => new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 }));
      try {
        const limiters = connections.map((connection) => new SendLimiter(connection));
        const rules = [windowRule(prefix, 'tenant1s', 50, SECOND), distinctRule(prefix, 'dest-a', 5)];
        const decisions = await Promise.all(
          Array.from({ length: 200 }, (_, i) => limiters[i % limiters.length]!.consume(rules, T0 + (i % 7), `e${i}`)),
        );
        assert.equal(decisions.filter((d) => d.allowed).length, 50);
        assert.equal((await statusOf(new SendLimiter(redis), rules[0]!, T0 + 10)).used, 50);
      } finally {
        await Promise.all(connections.map((connection) => connection.quit()));
      }
    });
  });
});

describe('event ids', () => {
  it('counts a retried consume with the same eventId once', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rules = [windowRule(prefix, 'dest10m', 2, 10 * MINUTE), backoffRule(prefix), distinctRule(prefix, 'dest-a')];
      assert.deepEqual(await limiter.consume(rules, T0, 'e1'), { allowed: true });
      // The retry comes 1 s later: inside the cooldown, yet it is the same send, so it is allowed.
      assert.deepEqual(await limiter.consume(rules, T0 + SECOND, 'e1'), { allowed: true });
      assert.deepEqual((await limiter.peek(rules, T0 + SECOND)).map((s) => s.used), [1, 1, 1]);
      assert.equal(await redis.zscore(rules[0]!.key, 'e1'), String(T0));
    });
  });

  it('a rule that already holds the eventId is neither checked nor counted again', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const full = windowRule(prefix, 'dest10m', 1, 10 * MINUTE);
      const added = windowRule(prefix, 'dest24h', 10, 24 * 60 * MINUTE);
      assert.deepEqual(await limiter.consume([full], T0, 'e1'), { allowed: true });
      // The retry meets a rule set that grew in between (a policy reload): e1 is already in the
      // full rule, so only the new rule is checked and recorded.
      assert.deepEqual(await limiter.consume([full, added], T0 + SECOND, 'e1'), { allowed: true });
      assert.deepEqual((await limiter.peek([full, added], T0 + SECOND)).map((s) => s.used), [1, 1]);
      assert.equal(await redis.zscore(full.key, 'e1'), String(T0), 'the retry does not move the event later');
      assert.equal((await limiter.consume([full, added], T0 + SECOND, 'e2')).allowed, false);
    });
  });

  it('release takes back exactly one event from every rule', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const window = windowRule(prefix, 'dest10m', 2, 10 * MINUTE);
      const rulesFor = (member: string): LimitRule[] => [window, distinctRule(prefix, member, 2)];
      await limiter.consume(rulesFor('dest-a'), T0, 'e1');
      await limiter.consume(rulesFor('dest-b'), T0 + MINUTE, 'e2');
      assert.equal((await limiter.consume(rulesFor('dest-c'), T0 + 2 * MINUTE, 'e3')).allowed, false);

      await limiter.release(rulesFor('dest-b'), 'e2');
      await limiter.release(rulesFor('dest-b'), 'e2'); // twice: no effect
      await limiter.release(rulesFor('dest-a'), 'unknown'); // not recorded: no effect
      assert.deepEqual((await limiter.peek(rulesFor('dest-c'), T0 + 2 * MINUTE)).map((s) => s.used), [1, 1]);
      assert.deepEqual(await limiter.consume(rulesFor('dest-c'), T0 + 2 * MINUTE, 'e3'), { allowed: true });
    });
  });

  it('releasing a repeat of a distinct member restores when it was seen before', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      await limiter.consume([distinctRule(prefix, 'dest-a')], T0, 'e1');
      await limiter.consume([distinctRule(prefix, 'dest-a')], T0 + 5 * MINUTE, 'e2');
      assert.equal((await statusOf(limiter, distinctRule(prefix, 'x'), T0 + 5 * MINUTE)).resetAt, T0 + 15 * MINUTE);
      await limiter.release([distinctRule(prefix, 'dest-a')], 'e2');
      assert.deepEqual(await statusOf(limiter, distinctRule(prefix, 'x'), T0 + 5 * MINUTE), {
        rule: 'ip', limit: 10, used: 1, remaining: 9, resetAt: T0 + 10 * MINUTE, retryAfterMs: 0,
      });
    });
  });
});

describe('memory', () => {
  it('every key expires with its window', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rules = [windowRule(prefix, 'dest10m', 3, 10 * MINUTE), distinctRule(prefix, 'dest-a'), backoffRule(prefix)];
      await limiter.consume(rules, T0, 'e1');
      const keys = await keysOf(redis, prefix);
      assert.equal(keys.length, 4, 'three rule keys and the distinct undo hash');
      const windows = new Map([
        [rules[0]!.key, 10 * MINUTE],
        [rules[1]!.key, 10 * MINUTE],
        [`${rules[1]!.key}:undo`, 10 * MINUTE],
        [rules[2]!.key, 60 * MINUTE],
      ]);
      for (const key of keys) {
        const ttl = await redis.pttl(key);
        const window = windows.get(key);
        assert.ok(window !== undefined, `unexpected key ${key}`);
        assert.ok(ttl > window - 5 * SECOND && ttl <= window, `${key} PTTL ${ttl}`);
      }
    });
  });

  it('trims entries that left the window and never stores refused events', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const rule = windowRule(prefix, 'dest10m', 3, 10 * MINUTE);
      for (let i = 0; i < 20; i += 1) await limiter.consume([rule], T0 + i * MINUTE, `e${i}`);
      // Allowed: 0, 1, 2 min, then 10, 11, 12 min as each slot freed; the rest were refused and
      // never stored, and the call at +19 min trimmed everything at or before +9 min.
      assert.deepEqual(await redis.zrange(rule.key, 0, -1), ['e10', 'e11', 'e12']);
    });
  });
});

describe('limit 0 and validation', () => {
  it('a limit of 0 refuses everything and records nothing', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const other = windowRule(prefix, 'dest24h', 10, 24 * 60 * MINUTE);
      assert.deepEqual(await limiter.consume([other, windowRule(prefix, 'blocked', 0, 10 * MINUTE)], T0, 'e1'), {
        allowed: false, rule: 'blocked', retryAfterMs: 10 * MINUTE,
      });
      assert.deepEqual(await limiter.consume([distinctRule(prefix, 'dest-a', 0)], T0, 'e2'), {
        allowed: false, rule: 'ip', retryAfterMs: 10 * MINUTE,
      });
      assert.equal((await statusOf(limiter, other, T0)).used, 0);
      assert.deepEqual(await keysOf(redis, prefix), []);
    });
  });

  it('throws a plain Error for rules no caller should build', async () => {
    await withRedisPrefix('lim', async (redis, prefix) => {
      const limiter = new SendLimiter(redis);
      const good = windowRule(prefix, 'dest10m', 3, 10 * MINUTE);
      const bad: [string, LimitRule[], RegExp][] = [
        ['negative limit', [{ ...good, limit: -1 }], /limit must be an integer ≥ 0/],
        ['fractional limit', [{ ...good, limit: 1.5 }], /limit must be an integer/],
        ['zero window', [{ ...good, windowMs: 0 }], /windowMs must be an integer ≥ 1/],
        ['duplicate key', [good, { ...good, name: 'other' }], /share a key/],
        ['duplicate name', [good, { ...good, key: limitKey(prefix, TENANT, 'x', 'y') }], /duplicate rule/],
        ['no hash tag', [{ ...good, key: `${prefix}:lim:acme:x` }], /no hash tag/],
        ['two hash tags', [good, { ...good, name: 'b', key: limitKey(prefix, 'other', 'x', 'y') }], /not in hash tag/],
        ['maxMs below baseMs', [backoffRule(prefix, 60 * SECOND, 30 * SECOND)], /maxMs must be an integer ≥ 60000/],
        ['zero baseMs', [backoffRule(prefix, 0, 30 * SECOND)], /baseMs must be an integer ≥ 1/],
        ['empty member', [distinctRule(prefix, '')], /needs a member/],
      ];
      for (const [label, rules, message] of bad) {
        await assert.rejects(limiter.consume(rules, T0, 'e1'), (error: unknown) => {
          assert.ok(error instanceof Error && error.constructor === Error, label);
          assert.match(error.message, message, label);
          return true;
        });
      }
      await assert.rejects(limiter.consume([good], T0, ''), /eventId/);
      await assert.rejects(limiter.consume([good], Number.NaN, 'e1'), /now/);
      assert.throws(() => limitKey(prefix, 'a}b', 'x', 'y'), /hash tag/);
      assert.deepEqual(await keysOf(redis, prefix), [], 'nothing reached Redis');
    });
  });
});
