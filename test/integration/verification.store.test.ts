/**
 * Integration tests of the verification state machine (common/store/verification.lua.ts) through
 * its typed wrapper, against the real Redis. Every test runs under a fresh key prefix that
 * `withRedisPrefix` removes afterwards; time is a fake clock passed as `now`, never a sleep.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { deliveryDeadlines } from '../../common/delivery/deadlines.js';
import { nextChannel, type Verification } from '../../common/domain/verification.js';
import { createCodeVault } from '../../common/security/code-vault.js';
import { DestinationLockout } from '../../common/security/lockout.js';
import { createKeySpace, verificationId, type KeySpace } from '../../common/store/keys.js';
import {
  VerificationStore,
  type CheckResult,
  type DeliveredFacts,
  type FallbackResult,
  type NewVerification,
  type ReceiptResult,
} from '../../common/store/verification.store.js';
import { TEST_REDIS_URL, withRedisPrefix } from '../helpers/redis.js';

const vault = createCodeVault('x'.repeat(32));
const CODE = '123456';
const TENANT = 'acme';
const T0 = 1_700_000_000_000;
const LIFETIME_MS = 10 * 60_000;
const RETENTION_MS = 60_000;
const MAX_ATTEMPTS = 5;
const LIMITS = { cooldownMs: 30_000, maxSends: 5 };
/** A lockout that the state-machine tests never reach; the lockout's own tests use LOCKING. */
const LOCKOUT = { maxConsecutiveFailures: 100, windowSeconds: 3600, lockSeconds: 900, maxFailuresPer24Hours: 100 };
const LOCKING = { maxConsecutiveFailures: 3, windowSeconds: 3600, lockSeconds: 900, maxFailuresPer24Hours: 5 };
/** newVerification's destination MAC (a MAC's base64url shape), which the ids' tag comes from. */
const DESTINATION_MAC = vault.destinationMac('+628123456789');
/** What a check that ends a seeded verification reports with it (newVerification's values). */
const ENDING = { purpose: 'login', country: 'ID', to: '+628123456789', kind: 'phone', createdAt: T0, channel: 'whatsapp', hasCallback: false } as const;

interface Fixture {
  redis: Redis;
  keys: KeySpace;
  store: VerificationStore;
}

/** Ids shaped like the API's (`ver_`, the destination's tag, 24 hex digits), so `parseExternalId` accepts them. */
function newId(destinationMac = DESTINATION_MAC): string {
  return verificationId(destinationMac, randomBytes(12).toString('hex'));
}

function newVerification(id: string, overrides: Partial<NewVerification> = {}): NewVerification {
  return {
    id,
    tenant: TENANT,
    to: '+628123456789',
    destinationMac: DESTINATION_MAC,
    kind: 'phone',
    country: 'ID',
    purpose: 'login',
    locale: 'id',
    plan: ['whatsapp', 'sms'],
    firstChannel: 'whatsapp',
    firstReason: 'initial',
    maxAttempts: MAX_ATTEMPTS,
    codeLength: CODE.length,
    deliveryTimeoutSeconds: 30,
    codeMac: vault.mac(id, CODE),
    codeSealed: vault.seal(id, CODE),
    createdAt: T0,
    expiresAt: T0 + LIFETIME_MS,
    fingerprint: 'fp-1',
    ...overrides,
  };
}

function withStore(label: string, body: (fixture: Fixture) => Promise<void>): Promise<void> {
  return withRedisPrefix(label, async (redis, prefix) => {
    const keys = createKeySpace(prefix);
    await body({ redis, keys, store: new VerificationStore(redis, keys, RETENTION_MS) });
  });
}

/** Creates a verification and returns its id. */
async function seed(store: VerificationStore, overrides: Partial<NewVerification> = {}): Promise<string> {
  const id = newId();
  assert.deepEqual(await store.create(newVerification(id, overrides)), { created: true });
  return id;
}

async function mustGet(store: VerificationStore, id: string): Promise<Verification> {
  const verification = await store.get(id);
  assert.ok(verification, `verification ${id} should exist`);
  return verification;
}

/**
 * Several stores on their own connections, so concurrent script calls really arrive at Redis
 * from different sockets in an unpredictable order. Connections are closed whatever happens.
 */
async function withStores(keys: KeySpace, count: number, body: (stores: VerificationStore[]) => Promise<void>): Promise<void> {
  const connections = Array.from({ length: count }, () => new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 }));
  try {
    await body(connections.map((connection) => new VerificationStore(connection, keys, RETENTION_MS)));
  } finally {
    await Promise.allSettled(connections.map((connection) => connection.quit()));
  }
}

function pick<T>(items: readonly T[], index: number): T {
  const item = items[index % items.length];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function wrongCode(index: number): string {
  // Six digits, never the right one.
  return String(200_000 + index);
}

describe('the destination lockout in the store scripts', () => {
  it('counts wrong codes across verifications of a destination, locks at the limit, and refuses checks and creates while locked', async () => {
    await withStore('lockout', async ({ redis, keys, store }) => {
      const lockout = new DestinationLockout(redis, keys);
      const first = await seed(store);
      const second = await seed(store);
      assert.equal((await store.check(first, TENANT, vault.mac(first, wrongCode(1)), T0, LOCKING)).lockMs, 0);
      assert.equal((await store.check(second, TENANT, vault.mac(second, wrongCode(2)), T0, LOCKING)).lockMs, 0);
      const third = await store.check(first, TENANT, vault.mac(first, wrongCode(3)), T0, LOCKING);
      assert.equal(third.status, 'pending');
      assert.equal(third.lockMs, LOCKING.lockSeconds * 1000, 'the third wrong code in a row locks the destination');

      // Locked: even the right code is refused, and no attempt is counted.
      const before = (await mustGet(store, second)).attempts;
      const refused = await store.check(second, TENANT, vault.mac(second, CODE), T0, LOCKING);
      assert.equal(refused.status, 'locked');
      assert.ok(refused.lockMs > 0 && refused.lockMs <= LOCKING.lockSeconds * 1000);
      assert.equal((await mustGet(store, second)).attempts, before);
      const create = await store.create(newVerification(newId()));
      assert.equal(create.created, false);
      assert.ok('lockedForMs' in create && create.lockedForMs > 0, 'a create to a locked destination is refused');
      assert.deepEqual(await store.create(newVerification(newId()), { lockout: false }), { created: true }, 'a decoy is stored anyway');
      assert.equal((await lockout.state(TENANT, DESTINATION_MAC)).locked, true);

      // Another tenant's verifications to the same number are not locked.
      const other = await seed(store, { tenant: 'other' });
      assert.equal((await store.check(other, 'other', vault.mac(other, CODE), T0, LOCKING)).status, 'approved');

      await lockout.unlock(TENANT, DESTINATION_MAC);
      assert.equal((await store.check(second, TENANT, vault.mac(second, CODE), T0, LOCKING)).status, 'approved');
    });
  });

  it('ends the run of wrong codes on a right one; the 24 h ceiling keeps counting', async () => {
    await withStore('lockout-run', async ({ store }) => {
      let daily = 0;
      const wrongThenRight = async () => {
        const id = await seed(store);
        for (let i = 0; i < LOCKING.maxConsecutiveFailures - 1; i += 1) {
          daily += 1;
          const result = await store.check(id, TENANT, vault.mac(id, wrongCode(i)), T0, LOCKING);
          if (daily < LOCKING.maxFailuresPer24Hours) assert.equal(result.lockMs, 0, `wrong code ${daily}`);
          else return result;
        }
        assert.equal((await store.check(id, TENANT, vault.mac(id, CODE), T0, LOCKING)).status, 'approved');
        return undefined;
      };
      // Two runs of 2 wrong codes, each ended by a right one: never 3 in a row.
      assert.equal(await wrongThenRight(), undefined);
      assert.equal(await wrongThenRight(), undefined);
      // The fifth wrong code of the day locks, though the run is only 1 long.
      const fifth = await wrongThenRight();
      assert.ok(fifth !== undefined && fifth.lockMs >= LOCKING.lockSeconds * 1000, 'the daily ceiling locks');
    });
  });

  it('leaves verifications with ids from before destination tags out of the lockout', async () => {
    await withStore('lockout-untagged', async ({ store }) => {
      const untagged = `ver_${randomBytes(12).toString('hex')}`;
      assert.deepEqual(await store.create(newVerification(untagged)), { created: true });
      for (let i = 0; i < LOCKING.maxConsecutiveFailures; i += 1) {
        assert.equal((await store.check(untagged, TENANT, vault.mac(untagged, wrongCode(i)), T0, LOCKING)).lockMs, 0);
      }
      assert.equal((await store.check(untagged, TENANT, vault.mac(untagged, CODE), T0, LOCKING)).status, 'approved');
    });
  });
});

describe('VerificationStore.create', () => {
  it('is idempotent: a replay returns the stored fingerprint, overwrites nothing, and the TTL covers lifetime + retention', async () => {
    await withStore('create', async ({ redis, keys, store }) => {
      const id = newId();
      assert.deepEqual(await store.create(newVerification(id)), { created: true });

      const replay = await store.create(
        newVerification(id, { to: '+6289999999999', fingerprint: 'fp-2', tenant: 'intruder', createdAt: T0 + 5_000, expiresAt: T0 + 5_000 }),
      );
      assert.deepEqual(replay, { created: false, fingerprint: 'fp-1' });

      const stored = await mustGet(store, id);
      assert.equal(stored.to, '+628123456789');
      assert.equal(stored.tenant, TENANT);
      assert.equal(stored.createdAt, T0);
      assert.equal(stored.expiresAt, T0 + LIFETIME_MS);
      assert.equal(stored.deliveries.length, 1);
      assert.equal(await redis.hget(keys.verification(id), 'fingerprint'), 'fp-1');

      const ttl = await redis.pttl(keys.verification(id));
      const expected = LIFETIME_MS + RETENTION_MS;
      assert.ok(ttl <= expected && ttl > expected - 5_000, `ttl ${ttl} should be about ${expected}`);
    });
  });

  it('stores every field as given, empty ones included, and refuses a value with a NUL (the fields travel NUL-joined)', async () => {
    await withStore('create-fields', async ({ redis, keys, store }) => {
      const id = newId();
      await store.create(newVerification(id, { country: undefined, fingerprint: '', callbackUrl: 'https://example.com/hook?a=1&b=%00' }));
      const stored = await redis.hgetall(keys.verification(id));
      assert.equal(stored.country, '');
      assert.equal(stored.fingerprint, '');
      assert.equal(stored.cb, 'https://example.com/hook?a=1&b=%00');
      assert.equal(stored.id, id);
      assert.equal(stored['d1:st'], 'queued');

      const other = newId();
      await assert.rejects(store.create(newVerification(other, { purpose: 'log\0in' })), /NUL/);
      assert.equal(await redis.exists(keys.verification(other)), 0);
    });
  });
});

describe('VerificationStore.check', () => {
  it('approves the right code once; a second check reports consumed', async () => {
    await withStore('check-ok', async ({ store }) => {
      const id = await seed(store);
      assert.deepEqual(await store.check(id, TENANT, vault.mac(id, CODE), T0 + 1_000, LOCKOUT), {
        status: 'approved',
        attemptsRemaining: MAX_ATTEMPTS - 1,
        ended: true,
        lockMs: 0,
        ending: ENDING,
      });
      assert.deepEqual(await store.check(id, TENANT, vault.mac(id, CODE), T0 + 2_000, LOCKOUT), {
        status: 'consumed',
        attemptsRemaining: 0,
        ended: false,
        lockMs: 0,
      });
      const stored = await mustGet(store, id);
      assert.equal(stored.status, 'approved');
      assert.equal(stored.approvedAt, T0 + 1_000);
      assert.equal(stored.endedAt, T0 + 1_000);
      assert.equal(stored.attempts, 1, 'the check after approval is not counted');
    });
  });

  it('counts wrong codes down 4, 3, 2, 1, then max_attempts, and refuses the right code afterwards', async () => {
    await withStore('check-wrong', async ({ store }) => {
      const id = await seed(store);
      const seen: CheckResult[] = [];
      for (let i = 0; i < MAX_ATTEMPTS; i += 1) seen.push(await store.check(id, TENANT, vault.mac(id, wrongCode(i)), T0 + 1_000 + i, LOCKOUT));
      assert.deepEqual(seen, [
        { status: 'pending', attemptsRemaining: 4, ended: false, lockMs: 0 },
        { status: 'pending', attemptsRemaining: 3, ended: false, lockMs: 0 },
        { status: 'pending', attemptsRemaining: 2, ended: false, lockMs: 0 },
        { status: 'pending', attemptsRemaining: 1, ended: false, lockMs: 0 },
        { status: 'max_attempts', attemptsRemaining: 0, ended: true, lockMs: 0, ending: ENDING },
      ]);
      assert.deepEqual(await store.check(id, TENANT, vault.mac(id, CODE), T0 + 9_000, LOCKOUT), {
        status: 'max_attempts',
        attemptsRemaining: 0,
        ended: false,
        lockMs: 0,
      });
      const stored = await mustGet(store, id);
      assert.equal(stored.status, 'max_attempts');
      assert.equal(stored.attempts, MAX_ATTEMPTS);
      assert.equal(stored.endedAt, T0 + 1_000 + MAX_ATTEMPTS - 1);
    });
  });

  it('answers expired at expiresAt without counting an attempt, and only the first such check ends it', async () => {
    await withStore('check-expired', async ({ store }) => {
      const id = await seed(store);
      const expiresAt = T0 + LIFETIME_MS;
      assert.deepEqual(await store.check(id, TENANT, vault.mac(id, CODE), expiresAt, LOCKOUT), {
        status: 'expired',
        attemptsRemaining: 0,
        ended: true,
        lockMs: 0,
        ending: ENDING,
      });
      assert.deepEqual(await store.check(id, TENANT, vault.mac(id, CODE), expiresAt + 1, LOCKOUT), {
        status: 'expired',
        attemptsRemaining: 0,
        ended: false,
        lockMs: 0,
      });
      const stored = await mustGet(store, id);
      assert.equal(stored.status, 'expired');
      assert.equal(stored.attempts, 0);
      assert.equal(stored.endedAt, expiresAt);
    });
  });

  it('an ending reports the latest delivery, the kind and the callback URL of the record', async () => {
    await withStore('check-ending', async ({ store }) => {
      const phone = await seed(store, { callbackUrl: 'https://example.com/hook' });
      assert.equal((await store.resend(phone, TENANT, 'sms', T0 + 60_000, LIMITS)).kind, 'ok');
      const resent = await store.check(phone, TENANT, vault.mac(phone, CODE), T0 + 61_000, LOCKOUT);
      assert.deepEqual(resent.ending, { ...ENDING, channel: 'sms', hasCallback: true });

      const email = await seed(store, { to: 'user@example.com', kind: 'email', country: undefined, plan: ['email'], firstChannel: 'email' });
      const approved = await store.check(email, TENANT, vault.mac(email, CODE), T0 + 1_000, LOCKOUT);
      assert.deepEqual(approved.ending, { ...ENDING, country: undefined, to: 'user@example.com', kind: 'email', channel: 'email' });
    });
  });

  it('one millisecond before expiresAt the right code is still approved', async () => {
    await withStore('check-edge', async ({ store }) => {
      const id = await seed(store);
      const result = await store.check(id, TENANT, vault.mac(id, CODE), T0 + LIFETIME_MS - 1, LOCKOUT);
      assert.equal(result.status, 'approved');
    });
  });

  it("gives another tenant not_found without moving the attempt counter, and unknown ids not_found", async () => {
    await withStore('check-tenant', async ({ store }) => {
      const id = await seed(store);
      for (let i = 0; i < 3; i += 1) {
        assert.deepEqual(await store.check(id, 'other-tenant', vault.mac(id, wrongCode(i)), T0 + 1_000, LOCKOUT), {
          status: 'not_found',
          attemptsRemaining: 0,
          ended: false,
          lockMs: 0,
        });
      }
      assert.deepEqual(await store.check(id, 'other-tenant', vault.mac(id, CODE), T0 + 1_000, LOCKOUT), {
        status: 'not_found',
        attemptsRemaining: 0,
        ended: false,
        lockMs: 0,
      });
      const stored = await mustGet(store, id);
      assert.equal(stored.attempts, 0);
      assert.equal(stored.status, 'pending');

      const unknown = newId();
      assert.deepEqual(await store.check(unknown, TENANT, vault.mac(unknown, CODE), T0 + 1_000, LOCKOUT), {
        status: 'not_found',
        attemptsRemaining: 0,
        ended: false,
        lockMs: 0,
      });
      assert.equal(await store.get(unknown), undefined, 'a check must not create a record');

      // The owner still has every attempt.
      assert.deepEqual(await store.check(id, TENANT, vault.mac(id, CODE), T0 + 2_000, LOCKOUT), {
        status: 'approved',
        attemptsRemaining: MAX_ATTEMPTS - 1,
        ended: true,
        lockMs: 0,
        ending: ENDING,
      });
    });
  });

  it("refuses a MAC computed for another verification id (the code is bound to its id)", async () => {
    await withStore('check-bound', async ({ store }) => {
      const id = await seed(store);
      const result = await store.check(id, TENANT, vault.mac(newId(), CODE), T0 + 1_000, LOCKOUT);
      assert.deepEqual(result, { status: 'pending', attemptsRemaining: MAX_ATTEMPTS - 1, ended: false, lockMs: 0 });
    });
  });

  it('after approval drops codeSealed and shrinks the TTL to the retention window', async () => {
    await withStore('check-finish', async ({ redis, keys, store }) => {
      const id = await seed(store);
      const key = keys.verification(id);
      assert.equal(await redis.hexists(key, 'codeSealed'), 1);
      assert.ok((await redis.pttl(key)) > RETENTION_MS + 60_000, 'before approval the record lives for its whole lifetime');

      assert.equal((await store.check(id, TENANT, vault.mac(id, CODE), T0 + 1_000, LOCKOUT)).status, 'approved');
      assert.equal(await redis.hexists(key, 'codeSealed'), 0);
      assert.equal(await redis.hexists(key, 'codeMac'), 1, 'the MAC stays so later checks still answer consumed');
      const ttl = await redis.pttl(key);
      assert.ok(ttl <= RETENTION_MS && ttl > RETENTION_MS - 5_000, `ttl ${ttl} should be about ${RETENTION_MS}`);
    });
  });

  it('after max_attempts and after expiry the record also drops codeSealed and shrinks its TTL', async () => {
    await withStore('check-finish2', async ({ redis, keys, store }) => {
      const exhausted = await seed(store);
      for (let i = 0; i < MAX_ATTEMPTS; i += 1) await store.check(exhausted, TENANT, vault.mac(exhausted, wrongCode(i)), T0 + 1_000, LOCKOUT);
      const expired = await seed(store);
      await store.check(expired, TENANT, vault.mac(expired, CODE), T0 + LIFETIME_MS, LOCKOUT);
      for (const id of [exhausted, expired]) {
        const key = keys.verification(id);
        assert.equal(await redis.hexists(key, 'codeSealed'), 0);
        const ttl = await redis.pttl(key);
        assert.ok(ttl <= RETENTION_MS && ttl > RETENTION_MS - 5_000, `ttl ${ttl} should be about ${RETENTION_MS}`);
      }
    });
  });
});

describe('VerificationStore.check under concurrency', () => {
  it('50 concurrent right codes from 10 connections approve exactly once', async () => {
    await withStore('race-ok', async ({ keys, store }) => {
      const id = await seed(store);
      const mac = vault.mac(id, CODE);
      await withStores(keys, 10, async (stores) => {
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => pick(stores, i).check(id, TENANT, mac, T0 + 1_000 + i, LOCKOUT)),
        );
        assert.equal(results.filter((result) => result.status === 'approved').length, 1);
        assert.equal(results.filter((result) => result.status === 'consumed').length, 49);
        assert.equal(results.filter((result) => result.ended).length, 1);
      });
      const stored = await mustGet(store, id);
      assert.equal(stored.status, 'approved');
      assert.equal(stored.attempts, 1);
    });
  });

  it('50 concurrent wrong guesses count exactly maxAttempts, approve none, and lock the right code out', async () => {
    await withStore('race-wrong', async ({ keys, store }) => {
      const id = await seed(store);
      await withStores(keys, 10, async (stores) => {
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => pick(stores, i).check(id, TENANT, vault.mac(id, wrongCode(i)), T0 + 1_000 + i, LOCKOUT)),
        );
        assert.equal(results.filter((result) => result.status === 'approved').length, 0);
        assert.equal(results.filter((result) => result.status === 'pending').length, MAX_ATTEMPTS - 1);
        assert.equal(results.filter((result) => result.status === 'max_attempts').length, 50 - (MAX_ATTEMPTS - 1));
        assert.equal(results.filter((result) => result.ended).length, 1);
        assert.deepEqual(
          results.filter((result) => result.status === 'pending').map((result) => result.attemptsRemaining).sort(),
          [1, 2, 3, 4],
        );
      });
      const stored = await mustGet(store, id);
      assert.equal(stored.attempts, MAX_ATTEMPTS);
      assert.equal(stored.status, 'max_attempts');
      assert.equal((await store.check(id, TENANT, vault.mac(id, CODE), T0 + 5_000, LOCKOUT)).status, 'max_attempts');
    });
  });

  it('a right code racing 49 wrong guesses is approved at most once and never beyond the attempt limit', async () => {
    await withStore('race-mixed', async ({ keys, store }) => {
      const id = await seed(store);
      await withStores(keys, 10, async (stores) => {
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            pick(stores, i).check(id, TENANT, vault.mac(id, i === 25 ? CODE : wrongCode(i)), T0 + 1_000 + i, LOCKOUT),
          ),
        );
        const approved = results.filter((result) => result.status === 'approved').length;
        assert.ok(approved <= 1);
        assert.equal(results.filter((result) => result.ended).length, 1);
      });
      const stored = await mustGet(store, id);
      assert.ok(stored.attempts <= MAX_ATTEMPTS, `attempts ${stored.attempts} must not exceed ${MAX_ATTEMPTS}`);
      assert.ok(stored.status === 'approved' || stored.status === 'max_attempts');
    });
  });
});

describe('VerificationStore.beginSend', () => {
  it('goes once from queued with the full send context; the same token again is done', async () => {
    await withStore('send-go', async ({ store }) => {
      const id = await seed(store);
      const first = await store.beginSend(id, 1, T0 + 100, 'tok-a');
      assert.equal(first.kind, 'go');
      if (first.kind !== 'go') return;
      const { codeSealed, ...rest } = first.context;
      assert.deepEqual(rest, {
        to: '+628123456789',
        country: 'ID',
        channel: 'whatsapp',
        locale: 'id',
        purpose: 'login',
        tenant: TENANT,
        expiresAt: T0 + LIFETIME_MS,
        plan: ['whatsapp', 'sms'],
        deliveryTimeoutSeconds: 30,
      });
      assert.equal(vault.open(id, codeSealed), CODE, 'the sealed code opens to the same code');

      assert.deepEqual(await store.beginSend(id, 1, T0 + 200, 'tok-a'), { kind: 'done', status: 'sending' });
      assert.equal((await mustGet(store, id)).deliveries[0]?.status, 'sending');
    });
  });

  it('goes again after markRetry, and after a crash (sending left by another token)', async () => {
    await withStore('send-retry', async ({ store }) => {
      const id = await seed(store);
      assert.equal((await store.beginSend(id, 1, T0 + 100, 'tok-a')).kind, 'go');
      await store.markRetry(id, 1, 'ETIMEDOUT');
      const retrying = (await mustGet(store, id)).deliveries[0];
      assert.equal(retrying?.status, 'retrying');
      assert.equal(retrying?.errorCode, 'ETIMEDOUT');

      assert.equal((await store.beginSend(id, 1, T0 + 200, 'tok-a')).kind, 'go');
      assert.deepEqual(await store.beginSend(id, 1, T0 + 300, 'tok-a'), { kind: 'done', status: 'sending' });

      // The run holding tok-a died mid-call; the job's next run carries a new token.
      assert.equal((await store.beginSend(id, 1, T0 + 400, 'tok-b')).kind, 'go');
      assert.deepEqual(await store.beginSend(id, 1, T0 + 500, 'tok-b'), { kind: 'done', status: 'sending' });

      // Once the provider answered, no token sends again.
      await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: 'wamid.retry', status: 'accepted', at: T0 + 600 });
      assert.deepEqual(await store.beginSend(id, 1, T0 + 700, 'tok-c'), { kind: 'done', status: 'accepted' });
      // markRetry only applies to a delivery that is sending.
      await store.markRetry(id, 1, 'LATE');
      assert.equal((await mustGet(store, id)).deliveries[0]?.status, 'accepted');
    });
  });

  it('says when a delivery is in doubt, and since when: a crash mid-call, or a retry after an unknown outcome', async () => {
    await withStore('send-doubt', async ({ store }) => {
      const id = await seed(store);
      const fresh = await store.beginSend(id, 1, T0 + 100, 'tok-a');
      assert.equal(fresh.kind === 'go' ? fresh.doubt : 'not go', undefined);

      // tok-a died mid-call: the next run learns that the call it may repeat started at T0 + 100.
      const afterCrash = await store.beginSend(id, 1, T0 + 40_000, 'tok-b');
      assert.deepEqual(afterCrash.kind === 'go' ? afterCrash.doubt : 'not go', { cause: 'worker_lost', callStartedAt: T0 + 100 });

      // A failure that says nothing about the provider (an HTTP 503) leaves no doubt…
      await store.markRetry(id, 1, 'http_503', false);
      const afterRefusal = await store.beginSend(id, 1, T0 + 41_000, 'tok-b');
      assert.equal(afterRefusal.kind === 'go' ? afterRefusal.doubt : 'not go', undefined);

      // …a timeout does, once: the run that settles it clears the flag.
      await store.markRetry(id, 1, 'timeout', true);
      const afterTimeout = await store.beginSend(id, 1, T0 + 50_000, 'tok-c');
      assert.deepEqual(afterTimeout.kind === 'go' ? afterTimeout.doubt : 'not go', { cause: 'provider_timeout', callStartedAt: T0 + 41_000 });
      await store.markRetry(id, 1, 'http_503', false);
      const settled = await store.beginSend(id, 1, T0 + 51_000, 'tok-d');
      assert.equal(settled.kind === 'go' ? settled.doubt : 'not go', undefined);
    });
  });

  it('is stale once the verification is approved, canceled or expired, and missing for an unknown delivery', async () => {
    await withStore('send-stale', async ({ store }) => {
      const approved = await seed(store);
      await store.check(approved, TENANT, vault.mac(approved, CODE), T0 + 1_000, LOCKOUT);
      assert.deepEqual(await store.beginSend(approved, 1, T0 + 2_000, 'tok'), { kind: 'stale', status: 'approved' });

      const canceled = await seed(store);
      await store.cancel(canceled, TENANT, T0 + 1_000);
      assert.deepEqual(await store.beginSend(canceled, 1, T0 + 2_000, 'tok'), { kind: 'stale', status: 'canceled' });

      const expired = await seed(store);
      // Still pending in the record: its expiry comes back, for the timer that has to end it.
      assert.deepEqual(await store.beginSend(expired, 1, T0 + LIFETIME_MS, 'tok'), { kind: 'stale', status: 'expired', pendingUntil: T0 + LIFETIME_MS });
      assert.equal((await mustGet(store, expired)).deliveries[0]?.status, 'queued', 'a stale begin changes nothing');

      const maxed = await seed(store);
      for (let i = 0; i < MAX_ATTEMPTS; i += 1) await store.check(maxed, TENANT, vault.mac(maxed, wrongCode(i)), T0 + 1_000, LOCKOUT);
      assert.deepEqual(await store.beginSend(maxed, 1, T0 + 2_000, 'tok'), { kind: 'stale', status: 'max_attempts' });

      const pending = await seed(store);
      assert.deepEqual(await store.beginSend(pending, 2, T0 + 100, 'tok'), { kind: 'missing' });
      assert.deepEqual(await store.beginSend(newId(), 1, T0 + 100, 'tok'), { kind: 'missing' });
    });
  });
});

describe('VerificationStore.markSent', () => {
  it('records the provider answer and never moves the status backwards', async () => {
    await withStore('sent-forward', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      // The delivered receipt overtook the provider's answer to the send call.
      await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 150, providerMessageId: 'wamid.1' }, T0 + 150);
      assert.deepEqual(
        await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: 'wamid.1', status: 'accepted', at: T0 + 200 }),
        { status: 'delivered', fellBack: false },
      );
      const delivery = (await mustGet(store, id)).deliveries[0];
      assert.equal(delivery?.status, 'delivered');
      assert.equal(delivery?.provider, 'ycloud');
      assert.equal(delivery?.providerMessageId, 'wamid.1');
      assert.equal(delivery?.sentAt, T0 + 200);
      assert.equal(delivery?.deliveredAt, T0 + 150);

      const other = await seed(store);
      await store.beginSend(other, 1, T0 + 100, 'tok');
      assert.deepEqual(
        await store.markSent(other, 1, { provider: 'ycloud', providerMessageId: 'wamid.2', status: 'accepted', at: T0 + 200 }),
        { status: 'accepted', fellBack: false },
      );
      assert.equal((await mustGet(store, other)).deliveries[0]?.status, 'accepted');
    });
  });

  it('reports fellBack when a fallback already left this delivery', async () => {
    await withStore('sent-fellback', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.fallback(id, 1, 'timeout', T0 + 30_100);
      assert.deepEqual(
        await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: 'wamid.slow', status: 'accepted', at: T0 + 31_000 }),
        { status: 'accepted', fellBack: true },
      );
    });
  });

  it('indexes the provider message id so findByProviderMessage finds {id, delivery}', async () => {
    await withStore('sent-index', async ({ redis, keys, store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: 'wamid.HBgL', status: 'accepted', at: T0 + 200 });
      await store.fallback(id, 1, 'timeout', T0 + 30_200);
      await store.beginSend(id, 2, T0 + 30_300, 'tok2');
      await store.markSent(id, 2, { provider: 'ycloud', providerMessageId: 'sms-77', status: 'sent', at: T0 + 30_400 });

      assert.deepEqual(await store.findByProviderMessage('ycloud', 'wamid.HBgL'), { id, delivery: 1 });
      assert.deepEqual(await store.findByProviderMessage('ycloud', 'sms-77'), { id, delivery: 2 });
      assert.equal(await store.findByProviderMessage('ycloud', 'unknown'), undefined);
      assert.equal(await store.findByProviderMessage('other-provider', 'wamid.HBgL'), undefined);

      const ttl = await redis.pttl(keys.providerMessage('ycloud', 'wamid.HBgL'));
      assert.ok(ttl > 0 && ttl <= RETENTION_MS, `index ttl ${ttl} should be bounded by the retention`);
    });
  });
});

/** The facts the first delivered receipt of `seed`'s delivery 1 comes with (RECEIPT's `delivered_facts`). */
function deliveredFacts(overrides: Partial<DeliveredFacts> = {}): DeliveredFacts {
  return { tenant: TENANT, country: 'ID', channel: 'whatsapp', latencySeconds: undefined, hasCallback: false, expiresAt: T0 + LIFETIME_MS, timerIdle: true, ...overrides };
}

/** deadlines.ts's rule for the timer going back to its expiry, on the record as stored: what RECEIPT's `timerIdle` mirrors. */
function timerIdleByRecord(verification: Verification, n: number): boolean {
  const channel = verification.deliveries.find((delivery) => delivery.n === n)?.channel;
  return verification.status === 'pending' && channel !== undefined && nextChannel(verification.plan, channel) !== undefined && deliveryDeadlines(verification).length === 0;
}

describe('VerificationStore.applyReceipt', () => {
  it('out-of-order and duplicate receipts never move a delivery backwards', async () => {
    await withStore('rcpt-order', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      const delivered = await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 300, providerMessageId: 'wamid.1' }, T0 + 300);
      assert.deepEqual(delivered, { changed: true, status: 'delivered', deliveredAfterFallback: false, firstDelivered: deliveredFacts(), fallback: undefined });
      for (const status of ['sent', 'accepted', 'delivered', 'failed'] as const) {
        assert.deepEqual(
          await store.applyReceipt(id, 1, { status, at: T0 + 400, providerMessageId: 'wamid.1' }, T0 + 400),
          { changed: false, status: 'delivered', deliveredAfterFallback: false, firstDelivered: undefined, fallback: undefined },
          `a late ${status} receipt: the first delivered state was claimed already`,
        );
      }
      const verification = await mustGet(store, id);
      assert.equal(verification.deliveries.length, 1);
      const delivery = verification.deliveries[0];
      assert.equal(delivery?.status, 'delivered');
      assert.equal(delivery?.deliveredAt, T0 + 300);
      assert.equal(delivery?.failedAt, undefined);
      assert.equal(delivery?.providerMessageId, 'wamid.1', 'a receipt can record the message id before markSent');
    });
  });

  it('read without delivered sets deliveredAt', async () => {
    await withStore('rcpt-read', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.applyReceipt(id, 1, { status: 'sent', at: T0 + 200, providerMessageId: 'wamid.1' }, T0 + 200);
      const read = await store.applyReceipt(id, 1, { status: 'read', at: T0 + 900, providerMessageId: 'wamid.1' }, T0 + 900);
      assert.deepEqual(read, { changed: true, status: 'read', deliveredAfterFallback: false, firstDelivered: deliveredFacts({ latencySeconds: 0.7 }), fallback: undefined });
      const delivery = (await mustGet(store, id)).deliveries[0];
      assert.equal(delivery?.status, 'read');
      assert.equal(delivery?.sentAt, T0 + 200);
      assert.equal(delivery?.deliveredAt, T0 + 900);
      // The delivered receipt that Meta sends late changes nothing.
      assert.equal((await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 950, providerMessageId: 'wamid.1' }, T0 + 950)).changed, false);
      assert.equal((await mustGet(store, id)).deliveries[0]?.deliveredAt, T0 + 900);
    });
  });

  it('a failed receipt starts the sms fallback exactly once, even when applied twice', async () => {
    await withStore('rcpt-failed', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: 'wamid.1', status: 'accepted', at: T0 + 200 });
      const failed = await store.applyReceipt(id, 1, { status: 'failed', at: T0 + 500, errorCode: '131026', providerMessageId: 'wamid.1' }, T0 + 500);
      assert.deepEqual(failed, {
        changed: true,
        status: 'failed',
        deliveredAfterFallback: false,
        firstDelivered: undefined,
        fallback: { kind: 'fallback', delivery: 2, channel: 'sms' },
      });
      // Applied again (the provider's retry), it reports the same decision so the caller can finish queueing it.
      const again = await store.applyReceipt(id, 1, { status: 'failed', at: T0 + 600, errorCode: '131026', providerMessageId: 'wamid.1' }, T0 + 600);
      assert.deepEqual(again, { changed: false, status: 'failed', deliveredAfterFallback: false, firstDelivered: undefined, fallback: { kind: 'already', delivery: 2, channel: 'sms' } });

      const verification = await mustGet(store, id);
      assert.equal(verification.deliveries.length, 2);
      const [first, second] = verification.deliveries;
      assert.equal(first?.status, 'failed');
      assert.equal(first?.failedAt, T0 + 500);
      assert.equal(first?.errorCode, '131026');
      assert.equal(first?.fellBackTo, 2);
      assert.equal(second?.channel, 'sms');
      assert.equal(second?.status, 'queued');
      assert.equal(second?.reason, 'failed');
      assert.equal(second?.queuedAt, T0 + 500);
      assert.equal(verification.lastSendAt, T0 + 500);
    });
  });

  it('delivered after failed is a double send, flagged once', async () => {
    await withStore('rcpt-late', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.applyReceipt(id, 1, { status: 'failed', at: T0 + 500, providerMessageId: 'wamid.1' }, T0 + 500);
      const late = await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 800, providerMessageId: 'wamid.1' }, T0 + 800);
      assert.deepEqual(late, { changed: true, status: 'delivered', deliveredAfterFallback: true, firstDelivered: deliveredFacts(), fallback: undefined });
      const read = await store.applyReceipt(id, 1, { status: 'read', at: T0 + 900, providerMessageId: 'wamid.1' }, T0 + 900);
      assert.deepEqual(read, { changed: true, status: 'read', deliveredAfterFallback: false, firstDelivered: undefined, fallback: undefined }, 'delivered → read is not a second delivery');
      const duplicate = await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 950, providerMessageId: 'wamid.1' }, T0 + 950);
      assert.deepEqual(duplicate, { changed: false, status: 'read', deliveredAfterFallback: false, firstDelivered: undefined, fallback: undefined });

      const verification = await mustGet(store, id);
      assert.equal(verification.deliveries.length, 2);
      assert.equal(verification.deliveries[0]?.deliveredAfterFallback, true);
      assert.equal(verification.deliveries[0]?.deliveredAt, T0 + 800);
      assert.equal(verification.deliveries[1]?.deliveredAfterFallback, false);
    });
  });

  it('stamps the failure with the provider time but decides expiry and stamps the fallback with our clock', async () => {
    await withStore('rcpt-clock', async ({ store }) => {
      const expiresAt = T0 + LIFETIME_MS;
      // The provider's clock runs ahead past our expiry; ours says the code is still valid.
      const ahead = await seed(store);
      const fast = await store.applyReceipt(ahead, 1, { status: 'failed', at: expiresAt + 5_000, providerMessageId: 'wamid.a' }, expiresAt - 1_000);
      assert.deepEqual(fast.fallback, { kind: 'fallback', delivery: 2, channel: 'sms' });
      const [first, second] = (await mustGet(store, ahead)).deliveries;
      assert.equal(first?.failedAt, expiresAt + 5_000, 'the failure keeps the provider time');
      assert.equal(second?.queuedAt, expiresAt - 1_000, 'the fallback is stamped with our clock');
      assert.equal((await mustGet(store, ahead)).lastSendAt, expiresAt - 1_000);

      // The provider's clock lags; ours says the verification has expired: no fallback.
      const behind = await seed(store);
      const slow = await store.applyReceipt(behind, 1, { status: 'failed', at: T0 + 1_000, providerMessageId: 'wamid.b' }, expiresAt);
      assert.equal(slow.fallback?.kind, 'ended');
      assert.equal((await mustGet(store, behind)).deliveries.length, 1);
    });
  });

  it('a failed receipt on a finished verification starts no fallback; an unknown delivery is missing', async () => {
    await withStore('rcpt-ended', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.check(id, TENANT, vault.mac(id, CODE), T0 + 200, LOCKOUT);
      const failed = await store.applyReceipt(id, 1, { status: 'failed', at: T0 + 300, providerMessageId: 'wamid.1' }, T0 + 300);
      assert.deepEqual(failed, { changed: true, status: 'failed', deliveredAfterFallback: false, firstDelivered: undefined, fallback: { kind: 'ended', status: 'approved' } });
      assert.equal((await mustGet(store, id)).deliveries.length, 1);

      assert.deepEqual(await store.applyReceipt(id, 7, { status: 'delivered', at: T0 + 300, providerMessageId: 'x' }, T0 + 300), {
        changed: false,
        status: 'missing',
        deliveredAfterFallback: false,
        firstDelivered: undefined,
        fallback: undefined,
      });
    });
  });
});

describe('VerificationStore.applyReceipt, the first delivered facts', () => {
  it('the timer may rest only when the verification is pending, the delivery had somewhere to fall back and nothing else waits', async () => {
    await withStore('rcpt-facts', async ({ store }) => {
      // A verification whose first delivery the provider reported sent at +200 ms.
      const sentOnce = async (overrides: Partial<NewVerification> = {}) => {
        const id = await seed(store, overrides);
        await store.beginSend(id, 1, T0 + 100, 'tok');
        await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: `m1.${id}`, status: 'sent', at: T0 + 200 });
        return id;
      };
      const cases: { label: string; idle: boolean; prepare: () => Promise<string> }[] = [
        {
          label: 'the only delivery, sent',
          idle: true,
          prepare: async () => {
            return await sentOnce({ callbackUrl: 'https://example.com/hook' });
          },
        },
        {
          label: 'an earlier delivery, while a resent one waits for its receipt',
          idle: false,
          prepare: async () => {
            const id = await sentOnce();
            assert.equal((await store.resend(id, TENANT, undefined, T0 + 40_000, LIMITS)).kind, 'ok');
            await store.beginSend(id, 2, T0 + 40_100, 'tok2');
            await store.markSent(id, 2, { provider: 'ycloud', providerMessageId: `wamid2.${id}`, status: 'sent', at: T0 + 40_200 });
            return id;
          },
        },
        {
          label: 'a plan with nowhere to fall back',
          idle: false,
          prepare: async () => {
            return await sentOnce({ plan: ['sms'], firstChannel: 'sms' });
          },
        },
        {
          label: 'a verification approved before the receipt',
          idle: false,
          prepare: async () => {
            const id = await sentOnce();
            assert.equal((await store.check(id, TENANT, vault.mac(id, CODE), T0 + 300, LOCKOUT)).status, 'approved');
            return id;
          },
        },
      ];
      for (const { label, idle, prepare } of cases) {
        // The first delivery's delivered receipt, whatever else happened since.
        const id = await prepare();
        const n = 1;
        const result = await store.applyReceipt(id, n, { status: 'delivered', at: T0 + 1_200, providerMessageId: 'x' }, T0 + 1_200);
        const facts = result.firstDelivered;
        assert.ok(facts !== undefined, label);
        assert.equal(facts.timerIdle, idle, label);
        assert.equal(timerIdleByRecord(await mustGet(store, id), n), idle, `${label}: the record says the same`);
        assert.equal(facts.latencySeconds, 1, `${label}: sent at +200 ms, delivered at +1,200 ms`);
        assert.equal(facts.channel, label === 'a plan with nowhere to fall back' ? 'sms' : 'whatsapp', label);
        assert.equal(facts.hasCallback, label === 'the only delivery, sent', label);
        assert.equal((await store.applyReceipt(id, n, { status: 'read', at: T0 + 1_300, providerMessageId: 'x' }, T0 + 1_300)).firstDelivered, undefined, `${label}: claimed once`);
      }
    });
  });
});

describe('VerificationStore.fallback', () => {
  it('a timeout racing a failed receipt on 100 verifications yields exactly 2 deliveries each', async () => {
    await withStore('fb-race', async ({ keys, store }) => {
      const ids = await Promise.all(Array.from({ length: 100 }, () => seed(store)));
      await Promise.all(ids.map((id) => store.beginSend(id, 1, T0 + 100, 'tok')));
      await withStores(keys, 10, async (stores) => {
        const outcomes = await Promise.all(
          ids.map(async (id, i) => {
            const [timeout, receipt] = await Promise.all([
              pick(stores, i).fallback(id, 1, 'timeout', T0 + 30_000),
              pick(stores, i + 5).applyReceipt(id, 1, { status: 'failed', at: T0 + 30_000, providerMessageId: `wamid.${i}` }, T0 + 30_000),
            ]);
            return { timeout, receipt };
          }),
        );
        for (const { timeout, receipt } of outcomes) {
          const kinds = [timeout.kind, receipt.fallback?.kind].sort();
          assert.deepEqual(kinds, ['already', 'fallback'], 'one side starts the fallback, the other sees it');
          const both: (FallbackResult | undefined)[] = [timeout, receipt.fallback];
          for (const result of both) assert.ok(result && 'delivery' in result && result.delivery === 2 && result.channel === 'sms');
        }
      });
      const all = await Promise.all(ids.map((id) => mustGet(store, id)));
      for (const verification of all) {
        assert.equal(verification.deliveries.length, 2, `${verification.id} has ${verification.deliveries.length} deliveries`);
        assert.equal(verification.deliveries[0]?.status, 'failed');
        assert.equal(verification.deliveries[0]?.fellBackTo, 2);
        assert.equal(verification.deliveries[1]?.channel, 'sms');
        assert.equal(verification.deliveries[1]?.fellBackTo, undefined);
      }
    });
  });

  it('a timeout after delivered does nothing', async () => {
    await withStore('fb-delivered', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 2_000, providerMessageId: 'wamid.1' }, T0 + 2_000);
      assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + 30_000), { kind: 'delivered' });
      assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + 31_000), { kind: 'delivered' });
      const verification = await mustGet(store, id);
      assert.equal(verification.deliveries.length, 1);
      assert.equal(verification.deliveries[0]?.fellBackTo, undefined);
      assert.equal(verification.lastSendAt, T0);
    });
  });

  it('an exhausted plan answers exhausted, and keeps answering it', async () => {
    await withStore('fb-exhausted', async ({ store }) => {
      const id = await seed(store, { plan: ['sms'], firstChannel: 'sms' });
      await store.beginSend(id, 1, T0 + 100, 'tok');
      assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + 30_000), { kind: 'exhausted' });
      assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + 31_000), { kind: 'exhausted' });
      assert.deepEqual(await store.fallback(id, 1, 'failed', T0 + 32_000, '30008'), { kind: 'exhausted' });
      const receipt = await store.applyReceipt(id, 1, { status: 'failed', at: T0 + 33_000, providerMessageId: 'sms-1' }, T0 + 33_000);
      assert.equal(receipt.changed, false, 'already failed: the receipt changes nothing');
      assert.deepEqual(receipt.fallback, { kind: 'exhausted' }, 'and reports the decision again, for a caller finishing an interrupted run');
      const verification = await mustGet(store, id);
      assert.equal(verification.deliveries.length, 1);
      assert.equal(verification.deliveries[0]?.fellBackTo, undefined);
      assert.equal(verification.deliveries[0]?.status, 'failed');
      assert.equal(verification.deliveries[0]?.errorCode, '30008');
    });
  });

  it('the last channel of a longer plan is exhausted too (whatsapp → sms → nothing)', async () => {
    await withStore('fb-chain', async ({ store }) => {
      const id = await seed(store);
      assert.deepEqual(await store.fallback(id, 1, 'rejected', T0 + 1_000, '131026'), { kind: 'fallback', delivery: 2, channel: 'sms' });
      assert.deepEqual(await store.fallback(id, 2, 'timeout', T0 + 31_000), { kind: 'exhausted' });
      assert.deepEqual(await store.fallback(id, 2, 'timeout', T0 + 32_000), { kind: 'exhausted' });
      const verification = await mustGet(store, id);
      assert.equal(verification.deliveries.length, 2);
      assert.equal(verification.deliveries[1]?.reason, 'rejected');
    });
  });

  it('a repeated fallback answers already with the same delivery and channel', async () => {
    await withStore('fb-already', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + 30_000), { kind: 'fallback', delivery: 2, channel: 'sms' });
      assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + 30_500), { kind: 'already', delivery: 2, channel: 'sms' });
      assert.deepEqual(await store.fallback(id, 1, 'failed', T0 + 31_000, '131049'), { kind: 'already', delivery: 2, channel: 'sms' });
      const verification = await mustGet(store, id);
      assert.equal(verification.deliveries.length, 2);
      assert.equal(verification.deliveries[1]?.reason, 'timeout');
      assert.equal(verification.deliveries[1]?.queuedAt, T0 + 30_000);
    });
  });

  it('answers ended for a finished or expired verification and missing for an unknown delivery', async () => {
    await withStore('fb-ended', async ({ store }) => {
      const canceled = await seed(store);
      await store.cancel(canceled, TENANT, T0 + 1_000);
      assert.deepEqual(await store.fallback(canceled, 1, 'timeout', T0 + 30_000), { kind: 'ended', status: 'canceled' });

      const expired = await seed(store);
      const result = await store.fallback(expired, 1, 'timeout', T0 + LIFETIME_MS);
      assert.equal(result.kind, 'ended');
      assert.equal((await mustGet(store, expired)).deliveries.length, 1);

      assert.deepEqual(await store.fallback(expired, 3, 'timeout', T0 + 30_000), { kind: 'missing' });
    });
  });
});

describe('VerificationStore.fallback: confirmed deliveries and expiry', () => {
  it(
    'a failed/rejected fallback for a delivery already confirmed delivered starts no new delivery',
    async () => {
      await withStore('fb-bug-delivered', async ({ store }) => {
        const id = await seed(store);
        await store.beginSend(id, 1, T0 + 100, 'tok');
        // The provider accepted the message but our HTTP call timed out; its receipt came in meanwhile.
        await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 2_000, providerMessageId: 'wamid.1' }, T0 + 2_000);
        assert.deepEqual(await store.fallback(id, 1, 'failed', T0 + 10_000, 'ETIMEDOUT'), { kind: 'delivered' });
        assert.deepEqual(await store.fallback(id, 1, 'rejected', T0 + 10_000, '131026'), { kind: 'delivered' });
        const verification = await mustGet(store, id);
        assert.equal(verification.deliveries.length, 1);
        assert.equal(verification.deliveries[0]?.status, 'delivered');
      });
    },
  );

  it(
    'reports an expired verification as ended with status expired',
    async () => {
      await withStore('fb-bug-expired', async ({ store }) => {
        const id = await seed(store);
        assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + LIFETIME_MS), { kind: 'ended', status: 'expired' });
      });
    },
  );
});

describe('VerificationStore.resend', () => {
  it('applies the cooldown, the latest channel, user_choice, max_sends and the channel kind', async () => {
    await withStore('resend', async ({ store }) => {
      const id = await seed(store);
      assert.deepEqual(await store.resend(id, TENANT, undefined, T0 + 10_000, LIMITS), { kind: 'cooldown', retryAfterMs: 20_000 });
      assert.deepEqual(await store.resend(id, TENANT, undefined, T0 + 30_000, LIMITS), { kind: 'ok', delivery: 2, channel: 'whatsapp', decoy: false });
      assert.deepEqual(await store.resend(id, TENANT, 'sms', T0 + 45_000, LIMITS), { kind: 'cooldown', retryAfterMs: 15_000 });
      assert.deepEqual(await store.resend(id, TENANT, 'sms', T0 + 60_000, LIMITS), { kind: 'ok', delivery: 3, channel: 'sms', decoy: false });
      assert.deepEqual(await store.resend(id, TENANT, undefined, T0 + 90_000, LIMITS), { kind: 'ok', delivery: 4, channel: 'sms', decoy: false });
      assert.deepEqual(await store.resend(id, TENANT, 'email', T0 + 120_000, LIMITS), { kind: 'channel_not_allowed' });
      assert.deepEqual(await store.resend(id, TENANT, 'whatsapp', T0 + 120_000, LIMITS), { kind: 'ok', delivery: 5, channel: 'whatsapp', decoy: false });
      assert.deepEqual(await store.resend(id, TENANT, undefined, T0 + 150_000, LIMITS), { kind: 'max_sends' });
      assert.deepEqual(await store.resend(id, 'other-tenant', undefined, T0 + 150_000, LIMITS), { kind: 'not_found' });

      const verification = await mustGet(store, id);
      assert.deepEqual(
        verification.deliveries.map((delivery) => [delivery.n, delivery.channel, delivery.reason, delivery.queuedAt, delivery.fellBackTo]),
        [
          [1, 'whatsapp', 'initial', T0, 2],
          [2, 'whatsapp', 'resend', T0 + 30_000, 3],
          [3, 'sms', 'user_choice', T0 + 60_000, 4],
          [4, 'sms', 'resend', T0 + 90_000, 5],
          [5, 'whatsapp', 'user_choice', T0 + 120_000, undefined],
        ],
      );
      assert.equal(verification.lastSendAt, T0 + 120_000);
    });
  });

  it('marks the superseded delivery so its late failure or timeout starts no other delivery', async () => {
    await withStore('resend-superseded', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok');
      await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: 'wamid.1', status: 'accepted', at: T0 + 200 });
      assert.deepEqual(await store.resend(id, TENANT, 'sms', T0 + 40_000, LIMITS), { kind: 'ok', delivery: 2, channel: 'sms', decoy: false });

      const late: ReceiptResult = await store.applyReceipt(id, 1, { status: 'failed', at: T0 + 41_000, providerMessageId: 'wamid.1' }, T0 + 41_000);
      assert.equal(late.changed, true);
      assert.deepEqual(late.fallback, { kind: 'already', delivery: 2, channel: 'sms' });
      assert.deepEqual(await store.fallback(id, 1, 'timeout', T0 + 42_000), { kind: 'already', delivery: 2, channel: 'sms' });
      assert.equal((await mustGet(store, id)).deliveries.length, 2);
    });
  });

  it('refuses a phone channel on an email verification and answers not_pending once it ended', async () => {
    await withStore('resend-kind', async ({ store }) => {
      const email = await seed(store, { kind: 'email', to: 'user@example.com', country: undefined, plan: ['email'], firstChannel: 'email' });
      assert.deepEqual(await store.resend(email, TENANT, 'sms', T0 + 30_000, LIMITS), { kind: 'channel_not_allowed' });
      assert.deepEqual(await store.resend(email, TENANT, undefined, T0 + 30_000, LIMITS), { kind: 'ok', delivery: 2, channel: 'email', decoy: false });

      const canceled = await seed(store);
      await store.cancel(canceled, TENANT, T0 + 1_000);
      assert.deepEqual(await store.resend(canceled, TENANT, undefined, T0 + 60_000, LIMITS), { kind: 'not_pending', status: 'canceled' });

      const expired = await seed(store);
      assert.deepEqual(await store.resend(expired, TENANT, undefined, T0 + LIFETIME_MS, LIMITS), { kind: 'not_pending', status: 'expired' });
      assert.deepEqual(await store.resend(newId(), TENANT, undefined, T0 + 60_000, LIMITS), { kind: 'not_found' });
    });
  });
});

describe('VerificationStore.cancel', () => {
  it('cancels a pending verification once; another tenant gets not_found; a later check answers canceled', async () => {
    await withStore('cancel', async ({ redis, keys, store }) => {
      const id = await seed(store);
      assert.deepEqual(await store.cancel(id, 'other-tenant', T0 + 500), { kind: 'not_found' });
      assert.equal((await mustGet(store, id)).status, 'pending');

      assert.deepEqual(await store.cancel(id, TENANT, T0 + 1_000), { kind: 'canceled' });
      assert.deepEqual(await store.cancel(id, TENANT, T0 + 2_000), { kind: 'not_pending', status: 'canceled' });
      assert.deepEqual(await store.check(id, TENANT, vault.mac(id, CODE), T0 + 3_000, LOCKOUT), {
        status: 'canceled',
        attemptsRemaining: 0,
        ended: false,
        lockMs: 0,
      });

      const stored = await mustGet(store, id);
      assert.equal(stored.status, 'canceled');
      assert.equal(stored.endedAt, T0 + 1_000);
      assert.equal(stored.attempts, 0);
      assert.equal(await redis.hexists(keys.verification(id), 'codeSealed'), 0);
      const ttl = await redis.pttl(keys.verification(id));
      assert.ok(ttl <= RETENTION_MS && ttl > RETENTION_MS - 5_000, `ttl ${ttl} should be about ${RETENTION_MS}`);

      assert.deepEqual(await store.cancel(newId(), TENANT, T0), { kind: 'not_found' });
      const expired = await seed(store);
      assert.deepEqual(await store.cancel(expired, TENANT, T0 + LIFETIME_MS), { kind: 'not_pending', status: 'expired' });
    });
  });
});

describe('VerificationStore.get', () => {
  it('decodes the full timeline: deliveries with channels, statuses, reasons and timestamps', async () => {
    await withStore('get', async ({ store }) => {
      const id = await seed(store);
      await store.beginSend(id, 1, T0 + 100, 'tok-1');
      await store.markSent(id, 1, { provider: 'ycloud', providerMessageId: 'wamid.1', status: 'accepted', at: T0 + 1_000 });
      await store.applyReceipt(id, 1, { status: 'sent', at: T0 + 2_000, providerMessageId: 'wamid.1' }, T0 + 2_000);
      await store.fallback(id, 1, 'timeout', T0 + 30_000);
      await store.beginSend(id, 2, T0 + 30_100, 'tok-2');
      await store.markSent(id, 2, { provider: 'ycloud', providerMessageId: 'sms-2', status: 'sent', at: T0 + 31_000 });
      await store.applyReceipt(id, 2, { status: 'delivered', at: T0 + 33_000, providerMessageId: 'sms-2' }, T0 + 33_000);
      await store.applyReceipt(id, 1, { status: 'delivered', at: T0 + 40_000, providerMessageId: 'wamid.1' }, T0 + 40_000);
      await store.check(id, TENANT, vault.mac(id, '000000'), T0 + 45_000, LOCKOUT);
      await store.check(id, TENANT, vault.mac(id, CODE), T0 + 50_000, LOCKOUT);

      const expected: Verification = {
        id,
        tenant: TENANT,
        to: '+628123456789',
        kind: 'phone',
        country: 'ID',
        purpose: 'login',
        locale: 'id',
        plan: ['whatsapp', 'sms'],
        status: 'approved',
        attempts: 2,
        maxAttempts: MAX_ATTEMPTS,
        codeLength: 6,
        deliveryTimeoutSeconds: 30,
        createdAt: T0,
        expiresAt: T0 + LIFETIME_MS,
        approvedAt: T0 + 50_000,
        endedAt: T0 + 50_000,
        lastSendAt: T0 + 30_000,
        deliveries: [
          {
            n: 1,
            channel: 'whatsapp',
            reason: 'initial',
            status: 'delivered',
            provider: 'ycloud',
            providerMessageId: 'wamid.1',
            errorCode: undefined,
            queuedAt: T0,
            sentAt: T0 + 1_000,
            deliveredAt: T0 + 40_000,
            failedAt: undefined,
            fellBackTo: 2,
            deliveredAfterFallback: true,
          },
          {
            n: 2,
            channel: 'sms',
            reason: 'timeout',
            status: 'delivered',
            provider: 'ycloud',
            providerMessageId: 'sms-2',
            errorCode: undefined,
            queuedAt: T0 + 30_000,
            sentAt: T0 + 31_000,
            deliveredAt: T0 + 33_000,
            failedAt: undefined,
            fellBackTo: undefined,
            deliveredAfterFallback: false,
          },
        ],
      };
      assert.deepStrictEqual(await store.get(id), expected);
    });
  });

  it('decodes a fresh email verification without a country, and answers undefined for an unknown id', async () => {
    await withStore('get-email', async ({ store }) => {
      const id = await seed(store, {
        kind: 'email',
        to: 'user@example.com',
        country: undefined,
        plan: ['email'],
        firstChannel: 'email',
        locale: 'pt-BR',
        purpose: 'signup',
      });
      const verification = await mustGet(store, id);
      assert.equal(verification.kind, 'email');
      assert.equal(verification.country, undefined);
      assert.equal(verification.locale, 'pt-BR');
      assert.deepEqual(verification.plan, ['email']);
      assert.equal(verification.status, 'pending');
      assert.equal(verification.approvedAt, undefined);
      assert.equal(verification.endedAt, undefined);
      assert.deepStrictEqual(verification.deliveries, [
        {
          n: 1,
          channel: 'email',
          reason: 'initial',
          status: 'queued',
          provider: undefined,
          providerMessageId: undefined,
          errorCode: undefined,
          queuedAt: T0,
          sentAt: undefined,
          deliveredAt: undefined,
          failedAt: undefined,
          fellBackTo: undefined,
          deliveredAfterFallback: false,
        },
      ]);
      assert.equal(await store.get(newId()), undefined);
    });
  });
});
