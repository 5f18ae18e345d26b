import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { QUEUES, callbackEventSchema, jobIds, type CallbackEvent } from '../../common/jobs/catalogue.js';
import { TENANTS, magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';

/**
 * Tenant callbacks end to end: a create with `callbackUrl`, the pipeline over the simulator, and a
 * local HTTP receiver standing in for the tenant. Every event is checked against its signature,
 * recomputed here over the exact bytes received with the tenant's API key.
 */

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  raw: Buffer;
  event: CallbackEvent;
  answered: number;
}

/** The tenant's endpoint: records every request and answers from a per-path script (default 200). */
class Receiver extends EventEmitter {
  readonly requests: Received[] = [];
  private readonly scripts = new Map<string, number[]>();
  private constructor(private readonly server: Server) {
    super();
  }

  static async start(): Promise<Receiver> {
    const server = createServer();
    const receiver = new Receiver(server);
    server.on('request', (request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const raw = Buffer.concat(chunks);
        const path = request.url ?? '';
        const status = receiver.scripts.get(path)?.shift() ?? 200;
        const entry: Received = { path, headers: request.headers, raw, event: callbackEventSchema.parse(JSON.parse(raw.toString('utf8'))), answered: status };
        receiver.requests.push(entry);
        response.writeHead(status, { 'Content-Type': 'text/plain' }).end('ok');
        receiver.emit('request', entry);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return receiver;
  }

  /** A fresh endpoint URL whose first answers are `statuses`, then 200. */
  endpoint(statuses: number[] = []): string {
    const path = `/hooks/${randomBytes(6).toString('hex')}`;
    this.scripts.set(path, [...statuses]);
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}${path}`;
  }

  to(url: string): Received[] {
    return this.requests.filter((entry) => entry.path === new URL(url).pathname);
  }

  /** Resolves once `count` requests to `url` satisfy `predicate` (event-driven, no polling). */
  waitFor(url: string, predicate: (entry: Received) => boolean, count = 1, timeoutMs = 10_000): Promise<Received[]> {
    return new Promise((resolve, reject) => {
      const matching = () => this.to(url).filter(predicate);
      const check = () => {
        const found = matching();
        if (found.length < count) return;
        cleanup();
        resolve(found);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${count} callback(s); got ${JSON.stringify(this.to(url).map((entry) => [entry.event.type, entry.answered]))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('request', check);
      };
      this.on('request', check);
      check();
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

let k: KurirHarness;
let receiver: Receiver;

before(async () => {
  receiver = await Receiver.start();
  k = await startKurir();
});
after(async () => {
  await k.close();
  await receiver.close();
});

/** Recomputes `Kurir-Signature` from scratch over the raw bytes; returns the signed timestamp. */
function assertSigned(entry: Received, apiKey: string, nowMs = Date.now()): number {
  const header = String(entry.headers['kurir-signature'] ?? '');
  const match = /^t=(\d+),s=([0-9a-f]{64})$/.exec(header);
  assert.ok(match !== null && match[1] !== undefined, `malformed Kurir-Signature: ${header}`);
  const t = Number(match[1]);
  const expected = createHmac('sha256', apiKey).update(`${t}.`).update(entry.raw).digest('hex');
  assert.equal(match[2], expected, 'the signature covers "<t>.<raw body>" with the tenant key');
  assert.ok(Math.abs(nowMs / 1000 - t) < 30, 'signed with the time of the attempt');
  assert.equal(entry.headers['content-type'], 'application/json');
  assert.equal(entry.headers['user-agent'], 'Kurir-Callbacks/1');
  assert.equal(entry.headers['kurir-event-id'], entry.event.id);
  return t;
}

async function create(body: Record<string, unknown>, tenant: keyof typeof TENANTS = 'acme') {
  const reply = await k.request('POST', '/v1/verifications', { body: { purpose: 'login', ...body }, tenant });
  assert.equal(reply.status, 202, reply.text);
  return reply.body as { id: string; plan: string[] };
}

async function jobState(queue: 'callbacks' | 'verification-expiry', jobId: string) {
  const job = await k.kurir.services.queues.queue(queue).getJob(jobId);
  assert.ok(job !== undefined, `no job ${jobId}`);
  return { job, state: await job.getState() };
}

/** Waits until a job is completed or failed (its state is one cheap read; no QueueEvents stream needed). */
async function finished(queue: 'callbacks' | 'verification-expiry', jobId: string) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { state } = await jobState(queue, jobId);
    // Read the job again once finished: a copy fetched before the state flipped lacks its result.
    if (state === 'completed' || state === 'failed') return await jobState(queue, jobId);
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${state}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('tenant callbacks', () => {
  test('WhatsApp failed → SMS: fallback, delivered, then approved — each signed with the tenant key', async () => {
    const url = receiver.endpoint();
    const to = magicNumber('1001');
    const created = await create({ to, callbackUrl: url });
    assert.deepEqual(created.plan, ['whatsapp', 'sms']);
    const view = await k.get(created.id);
    assert.equal((view.raw.body as { callbackUrl?: string }).callbackUrl, url, 'GET shows the callback URL');

    await receiver.waitFor(url, (entry) => entry.event.type === 'verification.delivered');
    const sms = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'sms');
    const check = await k.request('POST', `/v1/verifications/${created.id}/check`, { body: { code: sms.code } });
    assert.equal(check.body.status, 'approved');
    await receiver.waitFor(url, (entry) => entry.event.type === 'verification.approved');

    const events = receiver.to(url);
    const byTime = [...events].sort((a, b) => a.event.createdAt.localeCompare(b.event.createdAt));
    assert.deepEqual(byTime.map((entry) => entry.event.type), ['verification.fallback', 'verification.delivered', 'verification.approved']);
    assert.equal(new Set(events.map((entry) => entry.event.id)).size, 3, 'one id per event');
    for (const entry of events) {
      assertSigned(entry, TENANTS.acme);
      assert.equal(entry.event.verification.id, created.id);
      assert.equal(entry.event.verification.to, to);
      assert.equal(entry.event.verification.purpose, 'login');
      assert.ok(!entry.raw.toString('utf8').includes(sms.code ?? 'no code'), 'an event never carries the code');
    }
    assert.ok(!k.logs.some((line) => line.includes(TENANTS.acme) || line.includes(to) || line.includes(url)), 'no key, number or URL in the logs');
    const [fallback, delivered, approved] = byTime.map((entry) => entry.event);
    assert.deepEqual(fallback?.data, { delivery: 2, from: 'whatsapp', to: 'sms', reason: 'failed' });
    assert.equal(fallback?.verification.status, 'pending');
    assert.equal(delivered?.type, 'verification.delivered');
    if (delivered?.type === 'verification.delivered') {
      assert.equal(delivered.data.delivery, 2);
      assert.equal(delivered.data.channel, 'sms');
    }
    assert.equal(delivered?.verification.channel, 'sms');
    assert.equal(delivered?.verification.deliveries, 2);
    assert.equal(approved?.verification.status, 'approved');
  });

  test('an endpoint answering 500 twice gets the event once more after each, with the same id, until its 200', async () => {
    const url = receiver.endpoint([500, 500]);
    const created = await create({ to: magicNumber('0000'), callbackUrl: url });
    const attempts = await receiver.waitFor(url, (entry) => entry.event.type === 'verification.delivered', 3);
    assert.deepEqual(attempts.map((entry) => entry.answered), [500, 500, 200]);
    assert.equal(new Set(attempts.map((entry) => entry.event.id)).size, 1, 'a retry is the same event');
    assert.equal(new Set(attempts.map((entry) => entry.raw.toString('base64'))).size, 1, 'posted byte for byte the same');
    for (const entry of attempts) assertSigned(entry, TENANTS.acme);
    const { job, state } = await finished(QUEUES.callbacks, jobIds.callback(created.id, 'verification.delivered'));
    assert.equal(state, 'completed');
    assert.equal(job.attemptsStarted, 3);
    assert.equal(receiver.to(url).length, 3, 'nothing after the 200');
  });

  test('410 Gone stops the retries; events are signed with the key of the tenant that created the verification', async () => {
    const url = receiver.endpoint([410]);
    const created = await create({ to: magicNumber('0000'), callbackUrl: url }, 'beta');
    const [gone] = await receiver.waitFor(url, () => true);
    assert.ok(gone !== undefined);
    assertSigned(gone, TENANTS.beta);
    const { job, state } = await finished(QUEUES.callbacks, jobIds.callback(created.id, 'verification.delivered'));
    assert.equal(state, 'completed');
    assert.deepEqual(job.returnvalue, { outcome: 'gone' });
    assert.equal(job.attemptsStarted, 1);
    assert.equal(receiver.to(url).length, 1);
  });

  test('the expiry job ends a pending verification at expiresAt: expired event, status stored, sealed code dropped', async () => {
    const url = receiver.endpoint();
    const created = await create({ to: magicNumber('0000'), callbackUrl: url, ttlSeconds: 60 });
    await receiver.waitFor(url, (entry) => entry.event.type === 'verification.delivered');
    const { job, state } = await jobState(QUEUES.verificationExpiry, jobIds.verificationExpiry(created.id));
    assert.equal(state, 'delayed');
    const key = k.kurir.services.keys.verification(created.id);
    assert.equal(await k.redis.hexists(key, 'codeSealed'), 1);
    const endedBefore = (await k.kurir.services.metrics.verificationsEnded.get()).values.find(
      (value) => value.labels.tenant === 'acme' && value.labels.status === 'expired',
    )?.value ?? 0;

    // A fake clock one minute ahead, and the timer fast-forwarded: exactly what happens at expiresAt.
    const services = k.kurir.services;
    const realNow = services.now;
    services.now = () => Date.now() + 61_000;
    try {
      await job.changeDelay(0);
      const [expired] = await receiver.waitFor(url, (entry) => entry.event.type === 'verification.expired');
      assert.ok(expired !== undefined);
      assertSigned(expired, TENANTS.acme, services.now());
      assert.equal(expired.event.verification.status, 'expired');
      if (expired.event.type === 'verification.expired') {
        assert.equal(Date.parse(expired.event.data.expiresAt), Date.parse((await k.get(created.id)).raw.body.expiresAt as string));
      }
    } finally {
      services.now = realNow;
    }
    assert.equal(await k.redis.hget(key, 'status'), 'expired', 'stored, not only computed from the clock');
    assert.equal(await k.redis.hexists(key, 'codeSealed'), 0, 'the sealed code is gone at expiry');
    assert.equal((await k.get(created.id)).status, 'expired');
    const endedAfter = (await k.kurir.services.metrics.verificationsEnded.get()).values.find(
      (value) => value.labels.tenant === 'acme' && value.labels.status === 'expired',
    )?.value ?? 0;
    assert.equal(endedAfter, endedBefore + 1);
  });

  test('an approved verification is left alone by its expiry job', async () => {
    const url = receiver.endpoint();
    const to = magicNumber('0000');
    const created = await create({ to, callbackUrl: url });
    const whatsapp = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    await k.request('POST', `/v1/verifications/${created.id}/check`, { body: { code: whatsapp.code } });
    await receiver.waitFor(url, (entry) => entry.event.type === 'verification.approved');
    const jobId = jobIds.verificationExpiry(created.id);
    const { job } = await jobState(QUEUES.verificationExpiry, jobId);
    const services = k.kurir.services;
    const skipped = async () =>
      (await services.metrics.jobsSkipped.get()).values.find(
        (value) => value.labels.queue === QUEUES.verificationExpiry && value.labels.reason === 'not_pending',
      )?.value ?? 0;
    const skippedBefore = await skipped();
    const realNow = services.now;
    services.now = () => Date.now() + 301_000;
    try {
      await job.changeDelay(0);
      // A completed expiry job is removed at once (common/jobs/queues.ts): gone = ran to completion.
      const deadline = Date.now() + 10_000;
      while ((await services.queues.queue(QUEUES.verificationExpiry).getJob(jobId)) !== undefined) {
        assert.ok(Date.now() < deadline, `job ${jobId} did not finish`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    } finally {
      services.now = realNow;
    }
    assert.equal(await skipped(), skippedBefore + 1, 'the job ran and found the verification no longer pending');
    assert.equal((await k.get(created.id)).status, 'approved');
    assert.ok(!receiver.to(url).some((entry) => entry.event.type === 'verification.expired'));
  });

  test('SMS-only plan and the SMS undelivered: verification.failed, no fallback', async () => {
    const url = receiver.endpoint();
    const to = magicNumber('2001');
    const created = await create({ to, callbackUrl: url, channel: 'sms' });
    assert.deepEqual(created.plan, ['sms']);
    const [failed] = await receiver.waitFor(url, (entry) => entry.event.type === 'verification.failed');
    assert.ok(failed !== undefined);
    assertSigned(failed, TENANTS.acme);
    assert.equal(failed.event.type, 'verification.failed');
    if (failed.event.type === 'verification.failed') {
      assert.equal(failed.event.data.delivery, 1);
      assert.equal(failed.event.data.channel, 'sms');
    }
    assert.equal(failed.event.verification.status, 'pending', 'a resend may still be tried');
    assert.deepEqual(receiver.to(url).map((entry) => entry.event.type), ['verification.failed']);
  });

  test('no callbackUrl, no callbacks; a bad one is a 400 naming the field', async () => {
    const created = await create({ to: magicNumber('0000') });
    await k.waitFor(created.id, (v) => v.deliveries[0]?.status === 'delivered');
    assert.equal((await k.get(created.id)).raw.body.callbackUrl, null);
    assert.equal(await k.kurir.services.queues.queue(QUEUES.callbacks).getJob(jobIds.callback(created.id, 'verification.delivered')), undefined);

    for (const callbackUrl of ['https://user:secret@example.com/hook', 'https://example.com/hook#x', 'ftp://example.com/']) {
      const reply = await k.request('POST', '/v1/verifications', { body: { to: magicNumber('0000'), purpose: 'login', callbackUrl } });
      assert.equal(reply.status, 400, callbackUrl);
      assert.equal(reply.body.code, 'validation_failed');
      assert.deepEqual((reply.body.errors as { path: string }[]).map((error) => error.path), ['callbackUrl']);
    }
  });
});
