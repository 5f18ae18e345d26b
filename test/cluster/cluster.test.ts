import assert from 'node:assert/strict';
import { createHmac, randomInt, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_POLICY, tenantPolicy } from '../../common/config/policy.js';
import { parseDestination, type Destination } from '../../common/domain/destination.js';
import type { Channel } from '../../common/domain/channel.js';
import { QUEUES } from '../../common/jobs/catalogue.js';
import { signatureHeader } from '../../common/providers/ycloud/ycloud-signature.js';
import { DailyBudget } from '../../common/security/budget.js';
import { DestinationLockout } from '../../common/security/lockout.js';
import { PumpingGuard, type GuardSubject } from '../../common/security/pumping-guard.js';
import { SendLimiter, limitKey, type LimitRule } from '../../common/security/rate-limiter.js';
import { SendGate, limitRules } from '../../common/security/send-gate.js';
import { StatsStore } from '../../common/stats/stats.store.js';
import { createKeySpace, verificationId } from '../../common/store/keys.js';
import { createRedisConnection } from '../../common/store/redis-connection.js';
import { VerificationStore, type RedisClient } from '../../common/store/verification.store.js';
import { inspectRedis } from '../../common/runtime/redis-checks.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { magicNumber } from '../helpers/kurir.js';
import { keySlot, redisClusterUnavailable, startRedisCluster, type LocalRedisCluster } from '../helpers/redis-cluster.js';
import { ADMIN_TOKEN, installCommandAudit, keysPerNode, startClusterKurir, type ClusterKurir } from './harness.js';

/**
 * DESIGN.md "Redis layout rules" proved on a real Redis Cluster: every Lua script and every queue
 * touches one hash slot, so the same code runs on one Redis, Sentinel or Cluster.
 *
 * Part 1 needs no Redis: each multi-key Lua call site is driven through a recording client and
 * the slots of the keys it passes are compared (CRC16 per the cluster spec, keySlot()).
 * Part 2 starts a local 3-primary cluster from `redis-server`, checks keySlot() against
 * `CLUSTER KEYSLOT`, runs every Kurir role in this process against it and drives the main flows
 * over HTTP while auditing every command on the wire (harness.ts): no call may span two slots,
 * no CROSSSLOT error, no error-level log line, no connection outside the cluster.
 */

// Before any connection exists: the audit patches ioredis for this process.
const audit = installCommandAudit();
const unavailable = redisClusterUnavailable();

// ---------------------------------------------------------------------------------------------
// Part 1: the call sites, without Redis
// ---------------------------------------------------------------------------------------------

/** Canned replies that let each caller's parsing succeed; what matters is the keys it passes. */
const CANNED: Record<string, (argv: unknown[]) => unknown> = {
  // Admitted; with subjects (ARGV[3]), having created a shadow quarantine of the first one.
  kurirSendGate: (argv) => (Number(argv[2]) > 0 ? ['admit', 0, '', 1, Date.now() + 60_000, 'test', 1] : ['admit', 0, '']),
  kurirLimitConsume: () => [1],
  // 5 ARGV per rule after now and eventId; 3 numbers per rule back.
  kurirLimitPeek: (argv) => new Array(((argv.length - 2) / 5) * 3).fill(0),
  kurirLimitRelease: () => 0,
  kurirGuardRecordSend: () => [1, Date.now() + 60_000, 'test', 1],
  kurirGuardRecordApprovals: () => 1,
  kurirGuardStats: () => [0, 0, 0, 0],
  kurirGuardRelease: () => 1,
  kurirStatsAdd: () => 0,
  kurirBudgetConsume: () => [1, 1],
};

/** Stands in for ioredis: records what each script is registered with and every call's keys. */
class RecordingRedis {
  readonly registered = new Map<string, number | undefined>();
  readonly calls: { script: string; keys: string[] }[] = [];

  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void {
    this.registered.set(name, definition.numberOfKeys);
    (this as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      const count = definition.numberOfKeys ?? Number(args.shift());
      this.calls.push({ script: name, keys: args.slice(0, count).map(String) });
      return CANNED[name]?.(args.slice(count)) ?? null;
    };
  }
  async get(): Promise<null> {
    return null;
  }
  async set(): Promise<string> {
    return 'OK';
  }
  async del(): Promise<number> {
    return 0;
  }
  async exists(): Promise<number> {
    return 0;
  }
  async pttl(): Promise<number> {
    return -2;
  }
  async hmget(_key: string, ...fields: string[]): Promise<null[]> {
    return fields.map(() => null);
  }
  async hgetall(): Promise<Record<string, string>> {
    return {};
  }
  async zremrangebyscore(): Promise<number> {
    return 0;
  }
  async zrangebyscore(): Promise<string[]> {
    return [];
  }
  async zrem(): Promise<number> {
    return 0;
  }
}

function destination(raw: string): Destination {
  const parsed = parseDestination(raw);
  if (typeof parsed === 'string') throw new Error(`test destination ${raw}: ${parsed}`);
  return parsed;
}

/** Files whose Lua call sites part 1 drives; a new one must be added here (the test says so). */
const CHECKED_SCRIPT_FILES = [
  'common/store/verification.store.ts',
  'common/security/rate-limiter.ts',
  'common/security/pumping-guard.ts',
  'common/security/send-gate.ts',
  'common/security/lockout.ts',
  'common/security/budget.ts',
  'common/stats/stats.store.ts',
];

/** Every key part 1 saw, compared with the live cluster's CLUSTER KEYSLOT in part 2. */
const callSiteKeys = new Set<string>();

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (entry === 'node_modules' || entry === 'test' || entry === 'dist' || entry.startsWith('.')) continue;
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (path.endsWith('.ts')) out.push(path);
  }
  return out;
}

describe('key slots of every Lua call site (no Redis needed)', () => {
  test('keySlot() follows the cluster spec on its published examples', () => {
    // CRC16-XMODEM check value of "123456789" is 0x31C3 (12739); hash tags per the spec's examples.
    assert.equal(keySlot('123456789'), 0x31c3 % 16384);
    assert.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'));
    assert.notEqual(keySlot('foo{}{bar}'), keySlot('bar'), 'an empty first tag means the whole key is hashed');
    assert.equal(keySlot('foo{{bar}}zap'), keySlot('{bar'));
    assert.equal(keySlot('foo{bar}{zap}'), keySlot('bar'));
  });

  test('every multi-key script call passes keys of one slot, for many tenants, destinations and IPs', async () => {
    const recorder = new RecordingRedis();
    const redis = recorder as unknown as RedisClient;
    for (const prefix of ['kurir', 'kt-cluster.a_b']) {
      const keys = createKeySpace(prefix);
      new VerificationStore(redis, keys, 3_600_000);
      const limiter = new SendLimiter(redis);
      const guard = new PumpingGuard(redis, { keyPrefix: prefix });
      const budget = new DailyBudget(redis, prefix);
      const lockout = new DestinationLockout(redis, keys);
      const gate = new SendGate({ redis, limiter, guard, budget, lockout, keys });
      for (const tenant of ['acme', 'beta', 'bank-7_x']) {
        const security = tenantPolicy(DEFAULT_POLICY, tenant).security;
        const pumping = { ...security.pumping, mode: 'enforce' as const };
        for (const to of ['+6281234567890', '+16502531234', '+447911123456', 'user.name@example.com']) {
          for (const ip of ['203.0.113.7', '2001:db8::1', undefined]) {
            const now = Date.now();
            const destinationMac = createHmac('sha256', 'test').update(String(randomInt(1e9))).digest('base64url');
            const request = { tenant, destination: destination(to), destinationMac, ip, security: { ...security, pumping }, now };
            // With an SMS budget that fails closed, so the gate's script also reads a budget counter.
            const budgets = { ...security.budgets, sms: { dailyMessages: 1000, failClosed: true } };
            for (const channels of [['whatsapp', 'sms', 'email'], ['sms']] as const) {
              // With the no-WhatsApp hint's key too, as a create's automatic plan reads it.
              const channelsWithoutWhatsApp = channels.length > 1 ? (['sms'] as Channel[]) : undefined;
              const decision = await gate.admit({ ...request, security: { ...request.security, budgets }, channels: [...channels], channelsWithoutWhatsApp, eventId: `ver_${randomUUID().slice(0, 12)}-1`, idempotency: channels.length > 1 ? { name: randomUUID(), fingerprint: 'fp', ttlMs: 60_000 } : undefined });
              if (decision.admitted) await gate.cancel(decision, `ver_x-${now}`);
            }
            await limiter.consume(limitRules(request, prefix), now, `ver_${randomUUID().slice(0, 12)}-1`);
            await gate.status(request);
            await gate.recordApproval(tenant, request.destination, request.security, now - 1000, now);
            await lockout.state(tenant, destinationMac);
            // The lockout's keys, which the store's create and check scripts build from the
            // record (lockout.lua.ts), are in the slot of the destination's verifications.
            const id = verificationId(destinationMac, randomUUID().replaceAll('-', '').slice(0, 24));
            for (const key of Object.values(lockout.keys(tenant, destinationMac))) {
              assert.equal(keySlot(key), keySlot(keys.verification(id)), `${key} is not in the slot of ${keys.verification(id)}`);
            }
            assert.equal(keys.lockBaseOf(id), keys.lockBase(destinationMac));
            await budget.consume(tenant, 'sms', 100, now);
            await new StatsStore(redis, prefix).add(tenant, now, [{ country: 'ID', channel: 'sms', counters: { created: 1, cost: 5 }, samples: { ttv: 3 } }]);
          }
        }
        // Subjects with characters that would open a hash tag if the guard did not escape them.
        for (const subject of [{ dimension: 'prefix', value: '+62812{3}45' }, { dimension: 'country', value: 'I:D%' }] as GuardSubject[]) {
          await guard.recordSend(tenant, [subject], pumping, Date.now());
          await guard.stats(tenant, subject, pumping, Date.now());
          await guard.release(tenant, subject);
        }
      }
    }

    // The verification store: every script takes exactly the one verification key.
    const storeScripts = [...recorder.registered].filter(([name]) => !(name in CANNED));
    assert.ok(storeScripts.length >= 9, `expected the store's scripts, saw ${storeScripts.map(([n]) => n).join(', ')}`);
    for (const [name, numberOfKeys] of storeScripts) {
      assert.equal(numberOfKeys, 1, `store script ${name} must take exactly one key (the verification hash)`);
    }
    // Every other script was driven at least once, and every call stayed in one slot.
    for (const [name] of [...recorder.registered].filter(([script]) => script in CANNED)) {
      assert.ok(recorder.calls.some((call) => call.script === name), `script ${name} was registered but no call site was driven`);
    }
    assert.ok(recorder.calls.length > 500, `only ${recorder.calls.length} calls recorded`);
    for (const call of recorder.calls) {
      assert.ok(call.keys.length >= 1, `${call.script} passed no key`);
      const slots = new Set(call.keys.map((key) => keySlot(key)));
      assert.equal(slots.size, 1, `${call.script} spans slots ${[...slots].join(', ')}: ${call.keys.join(' ')}`);
      for (const key of call.keys) callSiteKeys.add(key);
    }
  });

  test('each queue has its own braced prefix: all of its BullMQ keys share one slot', () => {
    const keys = createKeySpace('kurir');
    const queues = Object.values(QUEUES);
    for (const queue of queues) {
      const prefix = keys.queuePrefix(queue);
      assert.match(prefix, /^\{[^{}]+\}$/, `${queue}: the prefix must be one hash tag`);
      const slot = keySlot(prefix);
      // What BullMQ builds from it: `<prefix>:<queue>:<suffix>` and `<prefix>:<queue>:<jobId>`.
      for (const suffix of ['wait', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'stalled', 'id', 'meta', 'events', 'limiter', 'marker', 'send-ver_0123456789ab-1', 'send-ver_0123456789ab-1:lock']) {
        assert.equal(keySlot(`${prefix}:${queue}:${suffix}`), slot, `${queue}:${suffix}`);
      }
    }
    // Distinct queues are distinct tags, so a cluster spreads them over its primaries.
    assert.equal(new Set(queues.map((queue) => keys.queuePrefix(queue))).size, queues.length);
  });

  test('no module registers Lua scripts other than the ones checked above', () => {
    const sites = sourceFiles(REPO_ROOT)
      .map((path) => relative(REPO_ROOT, path))
      .filter((path) => path !== 'common/store/scripts.ts' && path !== 'common/security/keyed-script.ts')
      .filter((path) => /\b(bindScript|bindKeyedScript|defineCommand)\s*(<[^>]*>)?\(/.test(readFileSync(join(REPO_ROOT, path), 'utf8')));
    const unchecked = sites.filter((path) => !CHECKED_SCRIPT_FILES.includes(path));
    assert.deepEqual(unchecked, [], `new Lua call sites: drive them in the slot test above (${unchecked.join(', ')})`);
  });
});

// ---------------------------------------------------------------------------------------------
// Part 2: a local Redis Cluster
// ---------------------------------------------------------------------------------------------

if (unavailable !== undefined) {
  // A visible notice in the runner's output, besides the skip itself.
  process.stderr.write(`\n# NOTICE: ${unavailable}\n`);
}

describe('Kurir on a local 3-primary Redis Cluster', { skip: unavailable ?? false }, () => {
  let cluster: LocalRedisCluster | undefined;
  let k: ClusterKurir;

  before(async () => {
    cluster = await startRedisCluster();
    k = await startClusterKurir(cluster);
  });
  after(async () => {
    const outcome = await k?.close();
    if (outcome === 'timed out') process.stderr.write('# NOTICE: Kurir did not close within 10 s on the cluster\n');
    await cluster?.close();
  });

  function live(): LocalRedisCluster {
    if (cluster === undefined) throw new Error('cluster not started');
    return cluster;
  }

  async function createFor(to: string, extra: Record<string, unknown> = {}, headers?: Record<string, string>) {
    const reply = await k.request('POST', '/v1/verifications', { body: { to, purpose: 'login', ...extra }, ...(headers === undefined ? {} : { headers }) });
    assert.equal(reply.status, 202, reply.text);
    return reply.body as { id: string; plan: string[]; channel: string };
  }

  async function check(id: string, code: string) {
    const reply = await k.request('POST', `/v1/verifications/${id}/check`, { body: { code } });
    assert.equal(reply.status, 200, reply.text);
    return reply.body as { status: string; valid: boolean; attemptsRemaining: number };
  }

  test('keySlot() agrees with CLUSTER KEYSLOT for 1,000 random keys and every call-site key', async () => {
    const alphabet = 'abcxyz0123456789:{}{}_-.é日';
    const keys = Array.from({ length: 1000 }, () =>
      Array.from({ length: randomInt(0, 40) }, () => alphabet[randomInt(alphabet.length)]).join(''),
    );
    keys.push(...callSiteKeys, ...Object.values(QUEUES).map((queue) => `${createKeySpace('kurir').queuePrefix(queue)}:${queue}:wait`));
    const node = live().node(live().ports[0] as number);
    try {
      const pipeline = node.pipeline();
      for (const key of keys) pipeline.cluster('KEYSLOT', key);
      const replies = (await pipeline.exec()) ?? [];
      assert.equal(replies.length, keys.length);
      replies.forEach(([error, slot], i) => {
        assert.equal(error, null);
        assert.equal(keySlot(keys[i] as string), slot, `slot of ${JSON.stringify(keys[i])}`);
      });
    } finally {
      await node.quit();
    }
  });

  test('WhatsApp delivered: a wrong code counts, the right one approves exactly once', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    assert.deepEqual(created.plan, ['whatsapp', 'sms']);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered');
    const code = whatsapp.code ?? '';
    const wrong = await check(created.id, code === '000000' ? '111111' : '000000');
    assert.deepEqual([wrong.status, wrong.valid, wrong.attemptsRemaining], ['pending', false, 4]);
    assert.deepEqual(await check(created.id, code), { id: created.id, status: 'approved', valid: true, attemptsRemaining: 3 });
    assert.equal((await check(created.id, code)).valid, false);
  });

  test('failed WhatsApp receipt: SMS fallback with the same code', async () => {
    const to = magicNumber('1001');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 3000);
    assert.equal(sms.code, whatsapp.code);
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.deepEqual([view.deliveries[0]?.status, view.deliveries[0]?.fellBackTo, view.deliveries[1]?.reason], ['failed', 2, 'failed']);
  });

  test('no receipt: SMS fallback after the delivery timeout', async () => {
    const to = magicNumber('1002');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 5000);
    assert.ok(sms.receivedAt - whatsapp.receivedAt >= 900, 'not before the 1 s timeout');
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries[1]?.reason, 'timeout');
    assert.deepEqual(k.simulator.messagesTo(to).map((m) => m.channel), ['whatsapp', 'sms']);
  });

  test('resend on SMS after the cooldown sends the same code', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const tooSoon = await k.request('POST', `/v1/verifications/${created.id}/resend`, { body: { channel: 'sms' } });
    assert.equal(tooSoon.status, 429, tooSoon.text);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // the e2e policy's cooldown is 1 s
    const resent = await k.request('POST', `/v1/verifications/${created.id}/resend`, { body: { channel: 'sms' } });
    assert.equal(resent.status, 202, resent.text);
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms');
    assert.equal(sms.code, whatsapp.code);
    const view = await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered');
    assert.equal(view.deliveries[1]?.reason, 'user_choice');
  });

  test('cancel: the code no longer verifies', async () => {
    const to = magicNumber('0000');
    const created = await createFor(to);
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    assert.equal((await k.request('POST', `/v1/verifications/${created.id}/cancel`)).status, 200);
    assert.equal((await check(created.id, whatsapp.code ?? '')).status, 'canceled');
    assert.equal((await k.request('POST', `/v1/verifications/${created.id}/cancel`)).status, 409);
  });

  test('GET /v1/limits reads every rule of a destination and IP (one script, one slot)', async () => {
    const to = magicNumber('0000');
    const ip = '198.51.100.23';
    await createFor(to, { context: { ip } });
    const reply = await k.request('GET', `/v1/limits?to=${encodeURIComponent(to)}&ip=${ip}`);
    assert.equal(reply.status, 200, reply.text);
    const limits = reply.body.limits as { rule: string; used: number }[];
    const rules = new Map(limits.map((limit) => [limit.rule, limit.used]));
    for (const rule of ['destination_10m', 'destination_24h', 'tenant_rate', 'ip_destinations', 'prefix_rate', 'country_rate']) {
      assert.ok(rules.has(rule), `rule ${rule} missing from ${reply.text}`);
    }
    assert.equal(rules.get('destination_10m'), 1);
    assert.equal(rules.get('ip_destinations'), 1);
  });

  test('a webhook event posted twice is recorded once', async () => {
    const to = magicNumber('1002');
    const created = await createFor(to);
    const message = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'sent');
    const body = JSON.stringify({
      id: `evt_${randomUUID()}`,
      type: 'whatsapp.message.updated',
      apiVersion: 'v2',
      createTime: new Date().toISOString(),
      whatsappMessage: { id: message.id, wabaId: 'waba_1', from: '+15550001000', to, status: 'delivered', externalId: `${created.id}-1` },
    });
    const post = () =>
      k.request('POST', '/v1/webhooks/ycloud', {
        tenant: null,
        rawBody: body,
        headers: {
          'Content-Type': 'application/json',
          'YCloud-Signature': signatureHeader(k.kurir.services.config.provider.webhookSecret, Math.floor(Date.now() / 1000), body),
        },
      });
    const first = await post();
    assert.equal(first.status, 200, first.text);
    assert.notEqual(first.body.duplicate, true);
    const again = await post();
    assert.equal(again.status, 200);
    assert.equal(again.body.duplicate, true);
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered');
  });

  test('the same Idempotency-Key and body: the same verification and one send', async () => {
    const to = magicNumber('0000');
    const key = `idem-${randomUUID()}`;
    const first = await createFor(to, { purpose: 'payment' }, { 'Idempotency-Key': key });
    const second = await k.request('POST', '/v1/verifications', { body: { to, purpose: 'payment' }, headers: { 'Idempotency-Key': key } });
    assert.equal(second.status, 202, second.text);
    assert.equal(second.body.id, first.id);
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    await k.waitFor(first.id, (v) => v.deliveries[0]?.status === 'delivered');
    assert.equal(k.simulator.messagesTo(to).length, 1);
    const reused = await k.request('POST', '/v1/verifications', { body: { to, purpose: 'login' }, headers: { 'Idempotency-Key': key } });
    assert.equal(reused.status, 422, reused.text);
  });

  test('operator endpoints: quarantine list and release, destination unlock', async () => {
    const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
    const list = await k.request('GET', '/admin/quarantines?tenant=acme', { tenant: null, headers: admin });
    assert.equal(list.status, 200, list.text);
    const release = await k.request('DELETE', '/admin/quarantines?tenant=acme&dimension=prefix&value=%2B6281200', { tenant: null, headers: admin });
    assert.equal(release.status, 200, release.text);
    const unlock = await k.request('POST', '/admin/unlock', { tenant: null, headers: admin, body: { to: magicNumber('0000') } });
    assert.equal(unlock.status, 200, unlock.text);
  });

  test('tenant callbacks are queued and posted (callbacks queue on the cluster)', async (t) => {
    const received: string[] = [];
    const server: Server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
      req.on('end', () => {
        received.push(raw);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, 'localhost', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const to = magicNumber('0000');
      const reply = await k.request('POST', '/v1/verifications', { body: { to, purpose: 'login', callbackUrl: `http://localhost:${port}/kurir` } });
      if (reply.status !== 202) {
        t.skip(`callbackUrl not accepted yet (${reply.status}): ${reply.text.slice(0, 120)}`);
        return;
      }
      const deadline = Date.now() + 8000;
      while (received.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
      assert.ok(received.length >= 1, 'no callback arrived within 8 s');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('the run spread over every primary; every script ran in one slot; no CROSSSLOT, no error log, no stray connection', async (t) => {
    const c = live();
    // The data really is spread: a single-node accident could not hide a cross-slot script.
    const perNode = await keysPerNode(c, k.prefix);
    const verificationNodes = [...perNode].filter(([, keys]) => keys.some((key) => key.startsWith(`${k.prefix}:{d`) && key.includes('}:ver_')));
    assert.ok(verificationNodes.length >= 2, `verification keys on ${verificationNodes.length} node(s) only`);
    const queueNodes = new Map<string, number>();
    for (const [port, keys] of perNode) {
      for (const key of keys) {
        const match = new RegExp(`^\\{${k.prefix}-([a-z-]+)\\}`).exec(key);
        if (match?.[1] !== undefined) queueNodes.set(match[1], port);
      }
    }
    assert.ok(new Set(queueNodes.values()).size >= 2, `queues all on one node: ${JSON.stringify([...queueNodes])}`);

    const counts = audit.scriptCounts();
    for (const script of ['kurirCreate', 'kurirCheck', 'kurirBeginSend', 'kurirMarkSent', 'kurirFallback', 'kurirReceipt', 'kurirResend', 'kurirCancel', 'kurirSendGate', 'kurirLimitPeek', 'kurirGuardRecordApprovals', 'kurirGuardRelease', 'kurirBudgetConsume']) {
      assert.ok((counts.get(script) ?? 0) > 0, `script ${script} never ran on the cluster; ran: ${[...counts.keys()].join(', ')}`);
    }
    assert.ok([...counts.keys()].some((name) => /^(addStandardJob|addDelayedJob|moveToFinished)/.test(name)), 'BullMQ scripts were audited too');
    assert.deepEqual(audit.crossSlot.map((call) => `${call.script ?? call.command}: ${call.keys.join(' ')}`), []);
    // One queue = one slot: every BullMQ script ran in the slot of one queue's braced prefix.
    const keys = createKeySpace(k.prefix);
    const queueSlots = new Set(Object.values(QUEUES).map((queue) => keySlot(keys.queuePrefix(queue))));
    const bullmqCalls = audit.calls.filter((call) => call.script !== undefined && !call.script.startsWith('kurir') && call.keys.some((key) => key.startsWith(`{${k.prefix}-`)));
    assert.ok(bullmqCalls.length > 50, `only ${bullmqCalls.length} BullMQ script calls audited`);
    for (const call of bullmqCalls) assert.ok(queueSlots.has(call.slots[0] as number), `${call.script} outside every queue slot: ${call.keys.join(' ')}`);

    const crossSlotErrors = audit.errors.filter((error) => /CROSSSLOT|non local key|different slots|same slots allocation/i.test(error.message));
    assert.deepEqual(crossSlotErrors, []);
    // NOSCRIPT is ioredis loading a script on a node for the first time (it resends it as EVAL).
    // CLIENT SETINFO is ioredis naming its library to a Redis older than 7.2, which does not know it.
    const unexpected = audit.errors.filter((error) => !/^NOSCRIPT/.test(error.message) && !/unknown subcommand 'SETINFO'/i.test(error.message));
    assert.deepEqual(unexpected, [], 'error replies from the cluster');
    assert.deepEqual([...audit.ports].filter((port) => !c.ports.includes(port)), [], 'a connection went outside REDIS_CLUSTER_NODES');

    const errorLines = k.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50);
    assert.deepEqual(errorLines, [], 'error-level log lines');
    assert.equal(k.logs.filter((line) => /CROSSSLOT|non local key/i.test(line)).length, 0);
    const checked = k.logs.find((line) => line.includes('redis settings checked'));
    assert.ok(checked !== undefined, 'the start-up Redis check ran on the cluster');

    t.diagnostic(`audited ${audit.calls.length} script/multi-key calls, ${counts.size} distinct scripts, 0 spanning two slots`);
    t.diagnostic(`scripts: ${[...counts].map(([name, n]) => `${name.replace(/:\d+\.\d+\.\d+$/, '')}×${n}`).join(' ')}`);
    t.diagnostic(`queues per node: ${JSON.stringify(Object.fromEntries([...queueNodes].map(([queue, port]) => [queue, port])))}`);
    t.diagnostic(`keys per node: ${JSON.stringify(Object.fromEntries([...perNode].map(([port, keys]) => [port, keys.length])))}`);
  });

  test('the audit is not vacuous: a cross-slot script is flagged and Redis refuses it', async () => {
    const client = live().client();
    const before = audit.crossSlot.length;
    try {
      await assert.rejects(client.eval('return 1', 2, 'kurir:{a}:x', 'kurir:{b}:y'), /CROSSSLOT/);
      // Once or more: a MOVED redirect sends it again to the owner of the first key.
      assert.ok(audit.crossSlot.length > before, 'the audit did not flag a cross-slot EVAL');
    } finally {
      audit.crossSlot.length = before;
      await client.quit();
    }
  });

  test("many tenants' scripts issued at once on the command connection each reach the node of their keys", async () => {
    // Scripts with a varying number of keys, for tenants whose slots spread over the three
    // primaries, all in one event-loop turn: what an auto-pipelining Cluster connection would
    // batch by the scripts' first argument (their key count) and send to one node
    // (redis-connection.ts, keyed-script.ts).
    const redis = createRedisConnection({ kind: 'cluster', nodes: live().ports.map((port) => ({ host: '127.0.0.1', port })), password: undefined }, 'commands', 'kt-autopipeline');
    try {
      const limiter = new SendLimiter(redis);
      const prefix = `kt-ap-${randomUUID().slice(0, 8)}`;
      const now = Date.now();
      const rules = (tenant: string, count: number): LimitRule[] =>
        Array.from({ length: count }, (_, i) => ({ kind: 'window', name: `w${i}`, key: limitKey(prefix, tenant, `w${i}`, 'x'), limit: 5, windowMs: 60_000 }));
      const tenants = Array.from({ length: 90 }, (_, i) => `tenant-${i}`);
      // redis-cli --cluster create splits the slots in three equal ranges.
      assert.equal(new Set(tenants.map((tenant) => Math.min(2, Math.floor(keySlot(`{${tenant}}`) / 5461)))).size, 3, 'tenants on every node');
      const consumed = await Promise.all(tenants.map((tenant, i) => limiter.consume(rules(tenant, 1 + (i % 3)), now, 'e1')));
      assert.ok(consumed.every((decision) => decision.allowed));
      const peeked = await Promise.all(tenants.map((tenant, i) => limiter.peek(rules(tenant, 1 + (i % 3)), now)));
      assert.deepEqual(peeked.map((statuses) => statuses.every((status) => status.used === 1)), tenants.map(() => true));
    } finally {
      await redis.quit();
    }
  });

  test(
    'the start-up check sees an unsafe maxmemory-policy on any primary',
    async () => {
      const c = live();
      const node = c.node(c.ports[2] as number);
      try {
        await node.config('SET', 'maxmemory-policy', 'allkeys-lru');
        const reports = [];
        for (let i = 0; i < 12; i += 1) reports.push(await inspectRedis(k.kurir.services.redis));
        const policies = reports.map((report) => report.maxmemoryPolicy);
        assert.ok(reports.every((report) => !report.safe), `12 inspections saw: ${policies.join(', ')}`);
      } finally {
        await node.config('SET', 'maxmemory-policy', 'noeviction');
        await node.quit();
      }
    },
  );

  let victim: number | undefined;

  test(
    'a lost primary (no replica): the API answers 503 with Retry-After within 3 s, never 500',
    async () => {
      const c = live();
      victim = c.ports[1] as number;
      c.signal(victim, 'SIGKILL');
      const answers: { status: number; ms: number; retryAfter: string | null }[] = [];
      for (let i = 0; i < 4; i += 1) {
        const began = Date.now();
        const reply = await k.request('POST', '/v1/verifications', { body: { to: magicNumber('0000'), purpose: 'login' } });
        answers.push({ status: reply.status, ms: Date.now() - began, retryAfter: reply.headers.get('retry-after') });
      }
      const unhandled = k.logs
        .filter((line) => line.includes('unhandled error'))
        .map((line) => (JSON.parse(line) as { err?: { message?: string } }).err?.message ?? '?');
      for (const answer of answers) {
        assert.ok(
          answer.status === 202 || (answer.status === 503 && answer.retryAfter !== null),
          `answered ${JSON.stringify(answers)}; unhandled errors: ${JSON.stringify([...new Set(unhandled)])}`,
        );
        assert.ok(answer.ms < 3000, `answered after ${answer.ms} ms`);
      }
    },
  );

  test('once the primary is back, creates succeed and are delivered (workers and queues recovered)', async () => {
    const c = live();
    if (victim !== undefined) await c.restart(victim);
    const deadline = Date.now() + 15_000;
    let recovered: string | undefined;
    let last = '';
    while (Date.now() < deadline && recovered === undefined) {
      const reply = await k.request('POST', '/v1/verifications', { body: { to: magicNumber('0000'), purpose: 'login' } });
      if (reply.status === 202) recovered = String(reply.body.id);
      else {
        last = `${reply.status} ${reply.text.slice(0, 120)}`;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    assert.ok(recovered !== undefined, `no create succeeded within 15 s of the node coming back; last: ${last}`);
    await k.waitFor(recovered, (v) => v.deliveries[0]?.status === 'delivered', 15_000);
    // Every queue again: a send on each channel, and the timer and receipt paths.
    const to = magicNumber('1002');
    const created = await createFor(to);
    await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms', 8000);
    await k.waitFor(created.id, (v) => v.deliveries[1]?.status === 'delivered', 8000);
  });
});
