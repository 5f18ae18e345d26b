import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUES, type QueueName } from '../../../common/jobs/catalogue.js';
import type { Verification } from '../../../common/domain/verification.js';
import { signatureHeader } from '../../../common/providers/ycloud/ycloud-signature.js';
import { decodeVerification } from '../../../common/store/verification.store.js';
import { startSimulator, type Simulator } from '../../../simulator/simulator.js';
import { ProcessGroup, freePort, poll, waitForHttp, type KurirProcess } from '../processes.js';
import { startProviderProxy, type ProviderProxy, type ProviderProxyOptions } from './provider-proxy.js';
import { startPrivateRedis, type PrivateRedis } from './redis-server.js';

/**
 * Kurir as an operator runs it for the chaos suite: a private Redis (AOF, `noeviction`), the
 * simulator inside the test process (so its log of provider calls survives any process kill),
 * optionally a fault-injecting proxy in front of it, and the roles as real OS processes — one
 * API, N workers, one scheduler — or all roles in one `main.ts` process (`embedded`). Everything
 * is torn down by {@link ChaosKurir.close}, whatever the test did.
 */

export const ALL_QUEUES: readonly QueueName[] = Object.values(QUEUES);
/**
 * The queues whose work must drain for the system to be at rest. A verification-expiry job waits
 * (delayed) until its verification's TTL is over by design, so it does not count as backlog; it
 * is also the verification's delivery timer, so a test that needs its timeouts to have fired
 * waits for them itself.
 */
export const WORK_QUEUES: readonly QueueName[] = ALL_QUEUES.filter((name) => (name as string) !== 'verification-expiry');
const START_TIMEOUT_MS = 20_000;
export const SIM_API_KEY = 'chaos_ycloud_api_key';
export const WEBHOOK_SECRET = 'whsec_chaos_suite_secret';

export interface ChaosOptions {
  /** Worker processes to start (default 1). */
  workers?: number;
  /** Start the scheduler process (default true). */
  scheduler?: boolean;
  /** Run every role in one `main.ts` process instead (its /metrics then shows every counter). */
  embedded?: boolean;
  /** Extra environment for every Kurir process (e.g. KURIR_DELIVERY_TIMEOUT_SECONDS). */
  env?: Record<string, string>;
  /** Simulator pause between receipts (default 20 ms). */
  receiptDelayMs?: number;
  /** Put a fault-injecting proxy between Kurir and the simulator. */
  proxy?: Omit<ProviderProxyOptions, 'upstream'>;
  /**
   * Receipts for these `externalId`s are swallowed on their way to the API (the provider "sent"
   * them, Kurir never hears of them): a delivery that only its own state can protect.
   */
  muteReceipts?: (receipt: { externalId: string | undefined; to: string | undefined }) => boolean;
}

export interface CreateReply {
  status: number;
  id: string | undefined;
  expiresAt: number | undefined;
  retryAfter: string | null;
  /** Wall time of the request, ms. */
  ms: number;
  body: Record<string, unknown>;
}

export type JobCounts = Record<string, number>;

export interface ChaosKurir {
  redis: PrivateRedis;
  /** An inspection connection to the private Redis (reconnects after restarts). */
  inspect: Redis;
  simulator: Simulator;
  proxy: ProviderProxy | undefined;
  prefix: string;
  tenantKey: string;
  apiUrl: string;
  api: KurirProcess;
  workers: KurirProcess[];
  scheduler: KurirProcess | undefined;
  group: ProcessGroup;
  queue(name: QueueName): Queue;
  /** Starts one more worker process and waits until it serves its queues. */
  spawnWorker(): Promise<KurirProcess>;
  /** Waits until `count` worker processes (and the scheduler) are registered with BullMQ. */
  waitForWorkers(count: number): Promise<void>;
  create(body: Record<string, unknown>, headers?: Record<string, string>): Promise<CreateReply>;
  /** `GET /v1/verifications/:id`, parsed. */
  get(id: string): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Every verification stored under the prefix. */
  verifications(): Promise<Verification[]>;
  /** Does the send job of delivery n exist (waiting, active, delayed, completed or failed)? */
  hasSendJob(verification: Verification, n: number): Promise<boolean>;
  counts(): Promise<Record<QueueName, JobCounts>>;
  /** Waits until no queue holds waiting, active, delayed or paused jobs for `quietMs` in a row. */
  waitSettled(options: { timeoutMs: number; quietMs?: number }): Promise<number>;
  /** The API's /metrics text. */
  metrics(): Promise<string>;
  /** The /metrics text of every running worker process (each gets its own METRICS_PORT). */
  workerMetrics(): Promise<string[]>;
  /** Posts a signed YCloud event to the API, as the provider would. */
  postWebhook(event: Record<string, unknown>): Promise<number>;
  transcripts(): string;
  close(): Promise<void>;
}

/** Sum of the counters of `name` whose labels include every one of `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const ok = Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`));
    if (!ok) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

export async function startChaosKurir(options: ChaosOptions = {}): Promise<ChaosKurir> {
  const redis = await startPrivateRedis();
  const group = new ProcessGroup();
  const queues = new Map<QueueName, Queue>();
  const prefix = `chaos-${randomBytes(3).toString('hex')}`;
  const tenantKey = `acme_${randomBytes(12).toString('hex')}`;
  const apiPort = await freePort();
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const simulator = await startSimulator({
    port: 0,
    apiKey: SIM_API_KEY,
    webhookSecret: WEBHOOK_SECRET,
    webhookUrl: `${apiUrl}/v1/webhooks/ycloud`,
    receiptDelayMs: options.receiptDelayMs ?? 20,
    slowReceiptMs: 2000,
    receiptRetryDelayMs: 500,
  });
  const proxy = options.proxy === undefined ? undefined : await startProviderProxy({ ...options.proxy, upstream: simulator.url });
  const relay = options.muteReceipts === undefined ? undefined : await startWebhookRelay(`${apiUrl}/v1/webhooks/ycloud`, options.muteReceipts);
  if (relay !== undefined) simulator.setWebhookUrl(relay.url);
  const inspect = redis.client();
  inspect.on('error', () => undefined);

  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    KURIR_KEY_PREFIX: prefix,
    KURIR_PROVIDER: 'ycloud',
    YCLOUD_BASE_URL: proxy?.baseUrl ?? `${simulator.url}/v2`,
    YCLOUD_API_KEY: SIM_API_KEY,
    YCLOUD_WEBHOOK_SECRET: WEBHOOK_SECRET,
    YCLOUD_WHATSAPP_FROM: '+15550001000',
    YCLOUD_EMAIL_FROM: 'Kurir <otp@kurir.example>',
    KURIR_API_KEYS: `acme=${tenantKey}`,
    KURIR_SECRET: randomBytes(24).toString('hex'),
    KURIR_DELIVERY_TIMEOUT_SECONDS: '5',
    KURIR_PUBLIC_URL: apiUrl,
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'warn',
    // Off for the API (it serves /metrics itself) and the scheduler; each worker gets its own.
    METRICS_PORT: '0',
    ...options.env,
  };

  const workers: KurirProcess[] = [];
  const metricsPorts = new Map<KurirProcess, number>();
  let workerSerial = 0;
  const queue = (name: QueueName): Queue => {
    let found = queues.get(name);
    if (found === undefined) {
      found = new Queue(name, { prefix: `{${prefix}-${name}}`, connection: { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 1 } });
      found.on('error', () => undefined);
      queues.set(name, found);
    }
    return found;
  };

  const api = group.spawn(options.embedded === true ? 'main (all roles)' : 'api', options.embedded === true ? 'main.ts' : 'api/main.ts', {
    ...env,
    PORT: String(apiPort),
  });
  const scheduler = options.embedded === true || options.scheduler === false ? undefined : group.spawn('scheduler', 'scheduler/main.ts', env);

  const kurir: ChaosKurir = {
    redis,
    inspect,
    simulator,
    proxy,
    prefix,
    tenantKey,
    apiUrl,
    api,
    workers,
    scheduler,
    group,
    queue,
    async spawnWorker() {
      workerSerial += 1;
      const metricsPort = await freePort();
      const worker = group.spawn(`worker-${workerSerial}`, 'worker/main.ts', { ...env, METRICS_PORT: String(metricsPort) });
      metricsPorts.set(worker, metricsPort);
      workers.push(worker);
      return worker;
    },
    async waitForWorkers(count) {
      const running = (): string | undefined => {
        const gone = [api, scheduler].find((p) => p !== undefined && !p.running);
        return gone === undefined ? undefined : `${gone.name} exited`;
      };
      await poll(
        async () => {
          const sending = await queue(QUEUES.sendWhatsapp).getWorkersCount();
          const timers = options.embedded === true ? 1 : scheduler === undefined ? 1 : await queue(QUEUES.deliveryTimeout).getWorkersCount();
          const expected = options.embedded === true ? 1 : count;
          return sending >= expected && timers >= 1 ? true : undefined;
        },
        { timeoutMs: START_TIMEOUT_MS, what: `${count} workers to register`, describe: () => group.transcripts(), giveUp: running },
      );
    },
    async create(body, headers = {}) {
      const started = performance.now();
      const response = await fetch(`${apiUrl}/v1/verifications`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${tenantKey}`, 'Content-Type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
      const text = await response.text();
      const ms = performance.now() - started;
      let parsed: Record<string, unknown> = {};
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        parsed = {};
      }
      return {
        status: response.status,
        id: typeof parsed.id === 'string' ? parsed.id : undefined,
        expiresAt: typeof parsed.expiresAt === 'string' ? Date.parse(parsed.expiresAt) : undefined,
        retryAfter: response.headers.get('retry-after'),
        ms,
        body: parsed,
      };
    },
    async get(id) {
      const response = await fetch(`${apiUrl}/v1/verifications/${id}`, { headers: { Authorization: `Bearer ${tenantKey}` } });
      const text = await response.text();
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        body = {};
      }
      return { status: response.status, body };
    },
    async verifications() {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await inspect.scan(cursor, 'MATCH', `${prefix}:{d*}:ver_*`, 'COUNT', 1000);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      const pipeline = inspect.pipeline();
      for (const key of keys) pipeline.hgetall(key);
      const replies = (await pipeline.exec()) ?? [];
      const found: Verification[] = [];
      for (const [error, fields] of replies) {
        if (error !== null) throw error;
        const decoded = decodeVerification(fields as Record<string, string>);
        if (decoded !== undefined) found.push(decoded);
      }
      return found;
    },
    async hasSendJob(verification, n) {
      const channel = verification.deliveries.find((d) => d.n === n)?.channel ?? 'whatsapp';
      const name = `send-${channel}`;
      return (await inspect.exists(`{${prefix}-${name}}:${name}:send-${verification.id}-${n}`)) === 1;
    },
    async counts() {
      const result = {} as Record<QueueName, JobCounts>;
      for (const name of ALL_QUEUES) {
        result[name] = await queue(name).getJobCounts('wait', 'active', 'delayed', 'paused', 'prioritized', 'waiting-children', 'failed', 'completed');
      }
      return result;
    },
    async waitSettled({ timeoutMs, quietMs = 1500 }) {
      const started = Date.now();
      let quietSince: number | undefined;
      let last = '';
      await poll(
        async () => {
          const counts = await kurir.counts();
          last = JSON.stringify(counts);
          const busy = WORK_QUEUES.map((name) => counts[name] ?? {}).some((c) => (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.paused ?? 0) + (c.prioritized ?? 0) > 0);
          if (busy || (proxy?.inFlight() ?? 0) > 0) {
            quietSince = undefined;
            return undefined;
          }
          quietSince ??= Date.now();
          return Date.now() - quietSince >= quietMs ? true : undefined;
        },
        { timeoutMs, what: 'every queue to drain', describe: () => `last counts: ${last}\n${group.transcripts()}` },
      );
      return Date.now() - started;
    },
    async metrics() {
      const response = await fetch(`${apiUrl}/metrics`);
      return await response.text();
    },
    async workerMetrics() {
      const running = workers.filter((worker) => worker.running && metricsPorts.has(worker));
      return await Promise.all(
        running.map(async (worker) => {
          const response = await fetch(`http://127.0.0.1:${metricsPorts.get(worker) ?? 0}/metrics`);
          return await response.text();
        }),
      );
    },
    async postWebhook(event) {
      const raw = Buffer.from(JSON.stringify(event));
      const response = await fetch(`${apiUrl}/v1/webhooks/ycloud`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'ycloud-signature': signatureHeader(WEBHOOK_SECRET, Math.floor(Date.now() / 1000), raw) },
        body: raw,
      });
      await response.arrayBuffer();
      return response.status;
    },
    transcripts: () => group.transcripts(),
    async close() {
      // Each step guarded: a failure in one must not leave a Redis or a process behind.
      await group.killAll().catch(() => undefined);
      await simulator.close().catch(() => undefined);
      await proxy?.close().catch(() => undefined);
      await relay?.close().catch(() => undefined);
      await Promise.allSettled([...queues.values()].map((q) => q.close()));
      inspect.disconnect();
      await redis.close();
    },
  };

  try {
    for (let i = 0; i < (options.embedded === true ? 0 : (options.workers ?? 1)); i += 1) await kurir.spawnWorker();
    await waitForHttp(`${apiUrl}/readyz`, api, START_TIMEOUT_MS);
    await kurir.waitForWorkers(options.workers ?? 1);
  } catch (error) {
    await kurir.close();
    throw error;
  }
  return kurir;
}

/** Forwards the simulator's webhooks to the API byte for byte (so signatures hold), except muted ones. */
async function startWebhookRelay(
  target: string,
  mute: (receipt: { externalId: string | undefined; to: string | undefined }) => boolean,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let externalId: string | undefined;
      let to: string | undefined;
      try {
        const event = JSON.parse(body.toString('utf8')) as Record<string, Record<string, unknown> | undefined>;
        const inner = event.whatsappMessage ?? event.sms ?? event.emailDelivery;
        externalId = typeof inner?.externalId === 'string' ? inner.externalId : undefined;
        to = typeof inner?.to === 'string' ? inner.to : undefined;
      } catch {
        externalId = undefined;
      }
      if (mute({ externalId, to })) {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"received":true}');
        return;
      }
      const signature = req.headers['ycloud-signature'];
      fetch(target, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(typeof signature === 'string' ? { 'ycloud-signature': signature } : {}) },
        body,
      })
        .then(async (response) => {
          const text = await response.text();
          res.writeHead(response.status, { 'content-type': 'application/json' }).end(text);
        })
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/webhooks/ycloud`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Fires `count` requests at a steady `perSecond` pace (not waiting for answers, at most
 * `maxInFlight` outstanding), the way independent clients arrive. Results in input order.
 */
export async function paced<R>(count: number, perSecond: number, maxInFlight: number, task: (index: number) => Promise<R>): Promise<R[]> {
  const results: Promise<R>[] = [];
  let inFlight = 0;
  const started = Date.now();
  for (let i = 0; i < count; i += 1) {
    const due = started + (i * 1000) / perSecond;
    while (Date.now() < due || inFlight >= maxInFlight) await new Promise((resolve) => setTimeout(resolve, 2));
    inFlight += 1;
    results.push(task(i).finally(() => (inFlight -= 1)));
  }
  return await Promise.all(results);
}

/** Runs `task` over `items` with at most `concurrency` in flight; results in input order. */
export async function pooled<T, R>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    for (;;) {
      const index = next;
      next += 1;
      if (index >= items.length) return;
      results[index] = await task(items[index] as T, index);
    }
  });
  await Promise.all(lanes);
  return results;
}

/** Provider calls that the simulator accepted (HTTP 200), grouped by `externalId` (`<verId>-<n>`). */
export function acceptedByExternalId(simulator: Simulator): Map<string, number[]> {
  const byId = new Map<string, number[]>();
  for (const message of simulator.messages()) {
    if (message.httpStatus !== 200 || message.externalId === undefined) continue;
    const list = byId.get(message.externalId) ?? [];
    list.push(message.receivedAt);
    byId.set(message.externalId, list);
  }
  return byId;
}

/**
 * Valid Indonesian mobiles (`+62812` + 8 digits), unique within a run: `next()` gives a plain
 * number (last 4 digits `0xxx`, never a simulator magic ending), `next('1002')` one ending in the
 * simulator's magic digits.
 */
export function numberFactory(): (last4?: string) => string {
  let plain = randomBytes(2).readUInt16BE();
  let magic = randomBytes(2).readUInt16BE() % 10_000;
  const pad = (value: number, width: number) => String(value).padStart(width, '0');
  return (last4) => {
    if (last4 !== undefined) {
      magic = (magic + 1) % 10_000;
      return `+62812${pad(magic, 4)}${last4}`;
    }
    plain = (plain + 1) % 10_000_000;
    return `+62812${pad(Math.floor(plain / 1000) % 10_000, 4)}0${pad(plain % 1000, 3)}`;
  };
}
