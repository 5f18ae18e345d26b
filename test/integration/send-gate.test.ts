/**
 * Integration tests of the send gate (common/security/send-gate.ts and its one script,
 * send-gate.lua.ts) against the real Redis: what each refusal leaves behind (nothing in the
 * limits), what an admission records (the limits and the pumping guard's count), and the order of
 * the checks. Every test runs under a fresh key prefix that `withRedisPrefix` removes afterwards;
 * time is a fake clock passed as `now`, never a sleep.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { DEFAULT_SECURITY, type SecurityPolicy } from '../../common/config/security-policy.js';
import { parseDestination, type Destination } from '../../common/domain/destination.js';
import { DailyBudget, nextUtcMidnight } from '../../common/security/budget.js';
import { DestinationLockout } from '../../common/security/lockout.js';
import { PumpingGuard, type GuardSubject } from '../../common/security/pumping-guard.js';
import { SendLimiter } from '../../common/security/rate-limiter.js';
import { SendGate, guardSubjects, limitRules, type GateDecision, type SendRequest } from '../../common/security/send-gate.js';
import { createKeySpace } from '../../common/store/keys.js';
import { withRedisPrefix } from '../helpers/redis.js';

const TENANT = 'acme';
/** A whole minute, so the guard's buckets are predictable. */
const T0 = 28_333_334 * 60_000;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const TO = '+6281234567890';

interface Fixture {
  redis: Redis;
  prefix: string;
  gate: SendGate;
  limiter: SendLimiter;
  guard: PumpingGuard;
  budget: DailyBudget;
  lockout: DestinationLockout;
}

function withGate(label: string, body: (f: Fixture) => Promise<void>): Promise<void> {
  return withRedisPrefix(label, async (redis, prefix) => {
    const limiter = new SendLimiter(redis);
    const guard = new PumpingGuard(redis, { keyPrefix: prefix });
    const budget = new DailyBudget(redis, prefix);
    const keys = createKeySpace(prefix);
    const lockout = new DestinationLockout(redis, keys);
    const gate = new SendGate({ redis, limiter, guard, budget, lockout, keys });
    await body({ redis, prefix, gate, limiter, guard, budget, lockout });
  });
}

function phone(raw: string): Destination {
  const parsed = parseDestination(raw);
  if (typeof parsed === 'string') throw new Error(`test destination ${raw}: ${parsed}`);
  return parsed;
}

function request(overrides: Partial<SendRequest> = {}): SendRequest {
  return {
    tenant: TENANT,
    destination: phone(TO),
    destinationMac: 'mac-dest',
    ip: undefined,
    channels: ['whatsapp', 'sms'],
    eventId: 'ver_a-1',
    security: DEFAULT_SECURITY,
    now: T0,
    ...overrides,
  };
}

/** Events recorded per rule of `req` (the limiter's own view). */
async function used(f: Fixture, req: SendRequest): Promise<Record<string, number>> {
  const statuses = await f.limiter.peek(limitRules(req, f.prefix), req.now);
  return Object.fromEntries(statuses.map((status) => [status.rule, status.used]));
}

/** Sends the guard counted for each subject of `req`. */
async function counted(f: Fixture, req: SendRequest): Promise<number[]> {
  return Promise.all(guardSubjects(req.destination).map(async (subject) => (await f.guard.stats(TENANT, subject, req.security.pumping, req.now)).sends));
}

function refusalOf(decision: GateDecision) {
  assert.equal(decision.admitted, false, JSON.stringify(decision));
  return decision.admitted ? undefined : decision.refusal;
}

describe('send gate', () => {
  it('admits a send and records it in every limit and for every guard subject, in one step', () =>
    withGate('gate-admit', async (f) => {
      const req = request();
      const decision = await f.gate.admit(req);
      assert.ok(decision.admitted);
      assert.deepEqual(decision.channels, ['whatsapp', 'sms']);
      assert.equal(decision.shadowQuarantine, undefined);
      assert.deepEqual(decision.newQuarantines, []);
      assert.deepEqual(await used(f, req), { destination_cooldown: 1, destination_10m: 1, destination_24h: 1, tenant_rate: 1, prefix_rate: 1, country_rate: 1 });
      assert.deepEqual(await counted(f, req), [1, 1]);
    }));

  it('a refused send leaves the limits and the guard as they were, and names the longest wait', () =>
    withGate('gate-limit', async (f) => {
      assert.ok((await f.gate.admit(request())).admitted);
      // Within the 1 s windows too, so that every rule still holds the first send.
      const again = request({ eventId: 'ver_b-1', now: T0 + 500 });
      assert.deepEqual(refusalOf(await f.gate.admit(again)), { kind: 'rate_limit', rule: 'destination_cooldown', retryAfterMs: 29_500, silenceable: false });
      assert.deepEqual(await used(f, again), { destination_cooldown: 1, destination_10m: 1, destination_24h: 1, tenant_rate: 1, prefix_rate: 1, country_rate: 1 });
      assert.deepEqual(await counted(f, again), [1, 1]);
    }));

  it('the same event again is admitted without counting it twice in the limits', () =>
    withGate('gate-replay', async (f) => {
      assert.ok((await f.gate.admit(request())).admitted);
      assert.ok((await f.gate.admit(request({ now: T0 + SECOND }))).admitted, 'a retried create passes its own cooldown');
      assert.equal((await used(f, request({ now: T0 + SECOND }))).destination_10m, 1);
    }));

  it('refuses on a spent daily budget that fails closed, before any limit is touched', () =>
    withGate('gate-budget', async (f) => {
      const security: SecurityPolicy = { ...DEFAULT_SECURITY, budgets: { ...DEFAULT_SECURITY.budgets, sms: { dailyMessages: 2, failClosed: true } } };
      await f.budget.consume(TENANT, 'sms', 2, T0);
      await f.budget.consume(TENANT, 'sms', 2, T0);
      const req = request({ channels: ['sms'], security });
      assert.deepEqual(refusalOf(await f.gate.admit(req)), { kind: 'budget', rule: 'budget_sms', retryAfterMs: nextUtcMidnight(T0) - T0, silenceable: false });
      assert.equal((await used(f, req)).destination_10m, 0);
      // WhatsApp first: its budget (none) decides, not the fallback's.
      assert.ok((await f.gate.admit(request({ security }))).admitted);
    }));

  it("refuses a reused Idempotency-Key's other request before any limit is touched, and marks a key only once admitted", () =>
    withGate('gate-idempotency', async (f) => {
      const marker = `${f.prefix}:idem:{${TENANT}}:k1`;
      const first = request({ idempotency: { name: 'k1', fingerprint: 'fp-a', ttlMs: 60_000 } });
      assert.ok((await f.gate.admit(first)).admitted);
      assert.equal(await f.redis.get(marker), 'fp-a');
      const ttl = await f.redis.pttl(marker);
      assert.ok(ttl > 59_000 && ttl <= 60_000, `marker TTL ${ttl}`);
      // The retry (same request, same event) is a replay: admitted, counted once.
      assert.ok((await f.gate.admit(first)).admitted);
      assert.equal((await used(f, first)).destination_10m, 1);
      // The same key with another request — another destination names another id, so only the marker tells.
      const other = request({ destinationMac: 'mac-other', eventId: 'ver_other-1', idempotency: { name: 'k1', fingerprint: 'fp-b', ttlMs: 60_000 } });
      assert.deepEqual(refusalOf(await f.gate.admit(other)), { kind: 'idempotency_conflict', rule: 'idempotency_key', silenceable: false });
      assert.equal((await used(f, other)).destination_10m, 0);
      assert.equal(await f.redis.get(marker), 'fp-a');
      // Another tenant's same key is its own.
      assert.ok((await f.gate.admit({ ...other, tenant: 'beta' })).admitted);
      // A refused send marks nothing: the key stays free for a request that can go.
      const closed = { ...DEFAULT_SECURITY, limits: { ...DEFAULT_SECURITY.limits, tenant: { perSecond: 0 } } };
      assert.equal(refusalOf(await f.gate.admit(request({ security: closed, eventId: 'ver_c-1', idempotency: { name: 'k2', fingerprint: 'fp-c', ttlMs: 60_000 } })))?.kind, 'rate_limit');
      assert.equal(await f.redis.exists(`${f.prefix}:idem:{${TENANT}}:k2`), 0);
    }));

  it('admits the plan without WhatsApp when the tenant knows the number has none, in the same script otherwise', () =>
    withGate('gate-no-whatsapp', async (f) => {
      const keys = createKeySpace(f.prefix);
      // No cooldown, so that the same destination is admitted again at once.
      const security = { ...DEFAULT_SECURITY, limits: { ...DEFAULT_SECURITY.limits, destination: { ...DEFAULT_SECURITY.limits.destination, cooldownSeconds: 0 } } };
      const automatic = request({ security, channelsWithoutWhatsApp: ['sms'] });
      const plain = await f.gate.admit(automatic);
      assert.deepEqual(plain.admitted && plain.channels, ['whatsapp', 'sms']);
      await f.redis.set(keys.noWhatsApp(TENANT, 'mac-dest'), '1');
      const hinted = await f.gate.admit({ ...automatic, eventId: 'ver_b-1' });
      assert.deepEqual(hinted.admitted && hinted.channels, ['sms']);
      // Counted once in the limits, whichever plan was admitted.
      assert.equal((await used(f, automatic)).destination_10m, 2);
      // Without an alternative (a channel the user picked, a resend) the hint is not read.
      const picked = await f.gate.admit(request({ security, eventId: 'ver_c-1' }));
      assert.deepEqual(picked.admitted && picked.channels, ['whatsapp', 'sms']);
      // Another tenant's hint does not apply.
      const other = await f.gate.admit(request({ tenant: 'beta', channelsWithoutWhatsApp: ['sms'] }));
      assert.deepEqual(other.admitted && other.channels, ['whatsapp', 'sms']);
      // The alternative passes the geo rules too.
      const smsDenied = { ...security, geo: { ...security.geo, channels: { ...security.geo.channels, sms: { allow: ['BR'], deny: [] } } } };
      assert.deepEqual(refusalOf(await f.gate.admit({ ...automatic, eventId: 'ver_d-1', security: smsDenied })), { kind: 'geo', rule: 'geo', silenceable: true });
    }));

  it('refuses by geo before reading anything', () =>
    withGate('gate-geo', async (f) => {
      const security: SecurityPolicy = { ...DEFAULT_SECURITY, geo: { ...DEFAULT_SECURITY.geo, deny: ['ID'] } };
      const req = request({ security });
      assert.deepEqual(refusalOf(await f.gate.admit(req)), { kind: 'geo', rule: 'geo', silenceable: true });
      assert.equal((await used(f, req)).destination_10m, 0);
    }));

  describe('pumping guard', () => {
    const pumping = DEFAULT_SECURITY.pumping;
    const prefixOf = (req: SendRequest): GuardSubject => guardSubjects(req.destination)[0] as GuardSubject;

    /** 150 unmatured sends to the request's number block with 2 approvals: the next matured send trips. */
    async function pumpBlock(f: Fixture, req: SendRequest): Promise<void> {
      const block = prefixOf(req);
      await Promise.all(Array.from({ length: 150 }, (_, i) => f.guard.recordSend(TENANT, [block], pumping, T0 + i * 100)));
      await f.guard.recordApproval(TENANT, [block], pumping, T0, T0 + 30 * SECOND);
      await f.guard.recordApproval(TENANT, [block], pumping, T0, T0 + 30 * SECOND);
    }

    it('the send that trips a quarantine is itself refused, leaves no limit behind, and is indexed', () =>
      withGate('gate-trip', async (f) => {
        const req = request({ now: T0 + 4 * MINUTE });
        await pumpBlock(f, req);
        const decision = await f.gate.admit(req);
        const refusal = refusalOf(decision);
        assert.equal(refusal?.kind, 'quarantine');
        assert.deepEqual(refusal?.kind === 'quarantine' && refusal.subject, prefixOf(req));
        assert.equal(decision.newQuarantines.length, 1);
        assert.equal((await used(f, req)).destination_10m, 0);
        assert.deepEqual((await f.guard.listQuarantines(TENANT, req.now)).map((q) => q.subject), [prefixOf(req)]);
        // The next send to that block is refused by the quarantine in force, before anything else.
        const next = request({ destination: phone('+6281234560001'), destinationMac: 'mac-next', eventId: 'ver_c-1', now: req.now + SECOND });
        const again = await f.gate.admit(next);
        assert.deepEqual(refusalOf(again), { kind: 'quarantine', rule: 'pumping_guard', subject: prefixOf(req), reason: 'conversion 0.01 < 0.2 over 150 sends in 3600 s', silenceable: true });
        assert.deepEqual(again.newQuarantines, []);
        assert.deepEqual(await counted(f, next), [151, 1], 'a send refused by a quarantine in force is not counted');
      }));

    it('in shadow mode the tripping send is admitted and reported, and later sends see the marker', () =>
      withGate('gate-shadow', async (f) => {
        const security: SecurityPolicy = { ...DEFAULT_SECURITY, pumping: { ...pumping, mode: 'shadow' } };
        const req = request({ now: T0 + 4 * MINUTE, security });
        await pumpBlock(f, req);
        const decision = await f.gate.admit(req);
        assert.ok(decision.admitted);
        assert.deepEqual(decision.newQuarantines.map((q) => [q.subject, q.shadow]), [[prefixOf(req), true]]);
        assert.equal(decision.shadowQuarantine, undefined, 'not yet in force when the send was checked');
        assert.equal((await used(f, req)).destination_10m, 1);
        const next = await f.gate.admit(request({ destinationMac: 'mac-next', eventId: 'ver_c-1', now: req.now + SECOND, security }));
        assert.ok(next.admitted);
        assert.deepEqual(next.shadowQuarantine?.subject, prefixOf(req));
        assert.deepEqual(next.newQuarantines, [], 'reported once');
      }));

    it('in mode off it reads and counts nothing for the guard', () =>
      withGate('gate-off', async (f) => {
        const security: SecurityPolicy = { ...DEFAULT_SECURITY, pumping: { ...pumping, mode: 'off' } };
        const req = request({ security });
        assert.ok((await f.gate.admit(req)).admitted);
        assert.deepEqual(await counted(f, req), [0, 0]);
        assert.equal((await used(f, req)).destination_10m, 1);
      }));
  });

  it('an email destination has no guard subject and no number-block limit', () =>
    withGate('gate-email', async (f) => {
      const req = request({ destination: { kind: 'email', value: 'user@example.com', country: undefined }, channels: ['email'] });
      assert.ok((await f.gate.admit(req)).admitted);
      assert.deepEqual(await used(f, req), { destination_cooldown: 1, destination_10m: 1, destination_24h: 1, tenant_rate: 1 });
    }));
});
