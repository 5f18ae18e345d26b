import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { loadConfig } from '../../common/config/env.js';
import { recordingLogger } from './logger.js';
import { startEmbedded, type Embedded } from '../../embedded.js';
import type { SimulatedMessage, Simulator } from '../../simulator/simulator.js';
import { indonesianMobile } from './numbers.js';
import { TEST_REDIS_URL, deletePrefix, freshPrefix } from './redis.js';

export const TENANTS = {
  acme: 'acme_test_key_0000000001',
  beta: 'beta_test_key_0000000002',
} as const;

export interface HttpReply {
  status: number;
  headers: Headers;
  /** Parsed JSON (an empty object when the body was empty or not JSON); assert field by field. */
  body: Record<string, unknown>;
  text: string;
}

export interface KurirHarness {
  url: string;
  prefix: string;
  kurir: Embedded;
  simulator: Simulator;
  /** A plain connection for inspecting Redis from the test. */
  redis: Redis;
  /** Every log line the process wrote, as JSON text. */
  logs: string[];
  request(method: string, path: string, options?: { body?: unknown; rawBody?: string; headers?: Record<string, string>; tenant?: keyof typeof TENANTS | null }): Promise<HttpReply>;
  create(body: Record<string, unknown>, headers?: Record<string, string>): Promise<HttpReply>;
  get(id: string): Promise<ReturnType<typeof asView> & { raw: HttpReply }>;
  /** Polls the public status until `predicate` holds (HTTP has no push; the interval is short). */
  waitFor(id: string, predicate: (v: ReturnType<typeof asView>) => boolean, timeoutMs?: number): Promise<ReturnType<typeof asView>>;
  /** The simulator's record of provider calls for one destination. */
  sentTo(to: string): SimulatedMessage[];
  close(): Promise<void>;
}

/** The public JSON view (GET /v1/verifications/:id), typed loosely for assertions. */
export function asView(body: unknown) {
  return body as {
    id: string;
    status: string;
    channel: string;
    plan: string[];
    attemptsRemaining: number;
    deliveries: {
      n: number;
      channel: string;
      status: string;
      reason: string;
      errorCode: string | null;
      sentAt: string | null;
      deliveredAt: string | null;
      fellBackTo: number | null;
      deliveredAfterFallback: boolean;
    }[];
  };
}

/** A valid Indonesian mobile number ending in the simulator's magic digits, distinct per call. */
export const magicNumber = indonesianMobile;

/**
 * Starts every role in this process (API, workers, scheduler) plus the provider simulator, on
 * free ports and a fresh Redis prefix, with fast receipts and a short delivery timeout. Roles
 * talk to each other only through Redis and HTTP, as in production.
 */
export async function startKurir(env: Record<string, string> = {}): Promise<KurirHarness> {
  const prefix = freshPrefix('e2e');
  const config = loadConfig({
    PORT: '0',
    SIMULATOR_PORT: '0',
    REDIS_URL: TEST_REDIS_URL,
    KURIR_KEY_PREFIX: prefix,
    KURIR_API_KEYS: Object.entries(TENANTS).map(([tenant, key]) => `${tenant}=${key}`).join(','),
    KURIR_SECRET: 'e2e-secret-0123456789abcdef0123456789abcdef',
    KURIR_DELIVERY_TIMEOUT_SECONDS: '1',
    SIMULATOR_RECEIPT_DELAY_MS: '20',
    SIMULATOR_SLOW_RECEIPT_MS: '2500',
    WORKER_CONCURRENCY: '10',
    LOG_LEVEL: 'debug',
    LOG_FORMAT: 'json',
    KURIR_POLICY_FILE: fileURLToPath(new URL('../fixtures/e2e.policy.yaml', import.meta.url)),
    ...env,
  });
  const { logger, lines: logs } = recordingLogger('debug');
  const kurir = await startEmbedded(config, { logger });
  if (kurir.simulator === undefined) throw new Error('the harness needs the simulator');
  const simulator = kurir.simulator;
  // Let the connections finish connecting: closing ioredis mid-handshake rejects commands that
  // BullMQ queued internally, which surfaces as unhandled rejections in a short test.
  await Promise.all([kurir.services.redis.ping(), kurir.services.workerRedis.ping()]);
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  const url = kurir.api.url;

  const request: KurirHarness['request'] = async (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    const tenant = options.tenant === undefined ? 'acme' : options.tenant;
    if (tenant !== null && headers.Authorization === undefined) headers.Authorization = `Bearer ${TENANTS[tenant]}`;
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['Content-Type'] ??= 'application/json';
    }
    const response = await fetch(`${url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
    const text = await response.text();
    let parsed: Record<string, unknown> = {};
    try {
      const value: unknown = text === '' ? {} : JSON.parse(text);
      if (typeof value === 'object' && value !== null) parsed = value as Record<string, unknown>;
    } catch {
      parsed = {};
    }
    return { status: response.status, headers: response.headers, body: parsed, text };
  };

  const harness: KurirHarness = {
    url,
    prefix,
    kurir,
    simulator,
    redis,
    logs,
    request,
    create: (body, headers) => request('POST', '/v1/verifications', { body, ...(headers === undefined ? {} : { headers }) }),
    async get(id) {
      const raw = await request('GET', `/v1/verifications/${id}`);
      return { ...asView(raw.body), raw };
    },
    async waitFor(id, predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      let last: ReturnType<typeof asView> | undefined;
      while (Date.now() < deadline) {
        const reply = await request('GET', `/v1/verifications/${id}`);
        last = asView(reply.body);
        if (reply.status === 200 && predicate(last)) return last;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error(`timed out waiting on ${id}; last seen: ${JSON.stringify(last)}`);
    },
    sentTo: (to) => simulator.messagesTo(to),
    async close() {
      await kurir.close();
      await deletePrefix(redis, prefix);
      await redis.quit();
    },
  };
  return harness;
}
