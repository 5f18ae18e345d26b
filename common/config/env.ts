import { z } from 'zod';
import { parseEndpoints, type RedisTopology } from '../store/redis-connection.js';

/**
 * Process configuration, read from the environment exactly once (this is the only module that
 * looks at `process.env`). Every value is validated here; a bad one stops the process with a
 * message that names the variable. Modules receive the slice of {@link Config} they need.
 */

export const QUEUE_ROLES = ['send-whatsapp', 'send-sms', 'send-email', 'receipts', 'callbacks'] as const;

/** Development-only defaults that let `npm start` work on a fresh clone; refused in production. */
const DEV_SECRET = 'kurir-development-secret-do-not-use-in-production-0000';
const DEV_API_KEYS = 'demo=kurir_demo_key_123456';
const SIM_API_KEY = 'sim_ycloud_api_key';
const SIM_WEBHOOK_SECRET = 'whsec_kurir_simulator_secret';

/**
 * `/metrics` port of the worker and scheduler processes (the API serves it on its own port).
 * One default for both: in containers each process has its own address; on one host, give each
 * process its own `METRICS_PORT`.
 */
export const DEFAULT_METRICS_PORT = 9464;

/** A blank variable counts as unset everywhere, numbers included (`PORT=` must not mean port 0). */
const blankAsUnset = (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value);
const integer = (min: number, max: number) => z.preprocess(blankAsUnset, z.coerce.number().int().min(min).max(max).optional());
const port = integer(0, 65535);
const optionalString = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value.trim()));

const envSchema = z.object({
  NODE_ENV: optionalString,
  PORT: port.transform((v) => v ?? 3000),
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  REDIS_SENTINELS: optionalString,
  REDIS_SENTINEL_NAME: optionalString,
  REDIS_CLUSTER_NODES: optionalString,
  REDIS_PASSWORD: optionalString,
  KURIR_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,40}$/, 'letters, digits, _ . - only (it becomes part of every Redis key)')
    .default('kurir'),
  KURIR_API_KEYS: optionalString,
  KURIR_SECRET: optionalString,
  KURIR_ADMIN_TOKEN: optionalString,
  KURIR_PROVIDER: z.enum(['simulator', 'ycloud']).default('simulator'),
  YCLOUD_BASE_URL: optionalString,
  YCLOUD_API_KEY: optionalString,
  YCLOUD_WEBHOOK_SECRET: optionalString,
  YCLOUD_WHATSAPP_FROM: optionalString,
  YCLOUD_SMS_SENDER_ID: optionalString,
  YCLOUD_EMAIL_FROM: optionalString,
  YCLOUD_TIMEOUT_MS: integer(100, 60_000).transform((v) => v ?? 8000),
  KURIR_DELIVERY_TIMEOUT_SECONDS: integer(1, 60).transform((v) => v ?? 30),
  KURIR_POLICY_FILE: optionalString,
  KURIR_RECORD_RETENTION_SECONDS: integer(60, 7 * 86400).transform((v) => v ?? 3600),
  KURIR_PUBLIC_URL: optionalString,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty']).optional(),
  WORKER_QUEUES: optionalString,
  WORKER_CONCURRENCY: integer(1, 1000).transform((v) => v ?? 20),
  METRICS_PORT: port.transform((v) => v ?? DEFAULT_METRICS_PORT),
  SIMULATOR_PORT: port.transform((v) => v ?? 4010),
  SIMULATOR_WEBHOOK_URL: optionalString,
  SIMULATOR_RECEIPT_DELAY_MS: integer(0, 60_000).transform((v) => v ?? 150),
  SIMULATOR_SLOW_RECEIPT_MS: integer(0, 600_000).transform((v) => v ?? 45_000),
});

export type QueueRole = (typeof QUEUE_ROLES)[number];

export interface Config {
  production: boolean;
  http: { port: number; publicUrl: string };
  redis: { url: string; keyPrefix: string; topology: RedisTopology };
  /** Key material for code HMACs and encryption of the plaintext kept for fallback. */
  secret: string;
  /** Tenant name → API key, as configured. Hashed before use by the authenticator. */
  apiKeys: ReadonlyMap<string, string>;
  /** Credential of the operator endpoints under /admin; unset = those endpoints are off. */
  adminToken: string | undefined;
  provider: {
    kind: 'simulator' | 'ycloud';
    baseUrl: string;
    apiKey: string;
    webhookSecret: string;
    whatsappFrom: string;
    smsSenderId: string | undefined;
    emailFrom: string;
    timeoutMs: number;
  };
  delivery: { timeoutSeconds: number };
  policyFile: string | undefined;
  retentionSeconds: number;
  log: { level: string; pretty: boolean };
  worker: { queues: readonly QueueRole[]; concurrency: number };
  /** Worker and scheduler processes serve `GET /metrics` on this port; 0 = not at all. */
  metrics: { port: number };
  simulator: { port: number; webhookUrl: string; receiptDelayMs: number; slowReceiptMs: number };
  /** Settings that fell back to development defaults; the process logs them as a warning. */
  developmentDefaults: string[];
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function parseApiKeys(raw: string): Map<string, string> {
  const keys = new Map<string, string>();
  for (const pair of raw.split(',')) {
    const trimmed = pair.trim();
    if (trimmed === '') continue;
    const eq = trimmed.indexOf('=');
    const tenant = trimmed.slice(0, eq).trim();
    const key = trimmed.slice(eq + 1).trim();
    if (eq <= 0 || !/^[a-z0-9][a-z0-9_-]{0,39}$/.test(tenant)) {
      throw new ConfigError('KURIR_API_KEYS: each entry must be tenant=key with a lower-case tenant name');
    }
    if (key.length < 16) throw new ConfigError(`KURIR_API_KEYS: the key of tenant "${tenant}" is shorter than 16 characters`);
    if (keys.has(tenant)) throw new ConfigError(`KURIR_API_KEYS: tenant "${tenant}" appears twice`);
    if ([...keys.values()].includes(key)) throw new ConfigError('KURIR_API_KEYS: two tenants share one key');
    keys.set(tenant, key);
  }
  if (keys.size === 0) throw new ConfigError('KURIR_API_KEYS: no tenant=key pair given');
  return keys;
}

function parseQueues(raw: string | undefined): QueueRole[] {
  if (raw === undefined) return [...QUEUE_ROLES];
  const wanted = raw.split(',').map((queue) => queue.trim()).filter((queue) => queue !== '');
  for (const queue of wanted) {
    if (!(QUEUE_ROLES as readonly string[]).includes(queue)) {
      throw new ConfigError(`WORKER_QUEUES: unknown queue "${queue}" (known: ${QUEUE_ROLES.join(', ')})`);
    }
  }
  if (wanted.length === 0) throw new ConfigError('WORKER_QUEUES: names no queue');
  return [...new Set(wanted)] as QueueRole[];
}

function redisTopology(e: z.infer<typeof envSchema>): RedisTopology {
  if (e.REDIS_SENTINELS !== undefined && e.REDIS_CLUSTER_NODES !== undefined) {
    throw new ConfigError('REDIS_SENTINELS and REDIS_CLUSTER_NODES: set one of them, not both');
  }
  if (e.REDIS_CLUSTER_NODES !== undefined) {
    const nodes = parseEndpoints(e.REDIS_CLUSTER_NODES);
    if (nodes === undefined) throw new ConfigError('REDIS_CLUSTER_NODES: must be host:port[,host:port…]');
    return { kind: 'cluster', nodes, password: e.REDIS_PASSWORD };
  }
  if (e.REDIS_SENTINELS !== undefined) {
    const sentinels = parseEndpoints(e.REDIS_SENTINELS);
    if (sentinels === undefined) throw new ConfigError('REDIS_SENTINELS: must be host:port[,host:port…]');
    if (e.REDIS_SENTINEL_NAME === undefined) throw new ConfigError('REDIS_SENTINEL_NAME: required with REDIS_SENTINELS');
    const db = Number(new URL(e.REDIS_URL).pathname.slice(1) || 0);
    return { kind: 'sentinel', sentinels, name: e.REDIS_SENTINEL_NAME, password: e.REDIS_PASSWORD, db: Number.isInteger(db) ? db : 0 };
  }
  if (e.REDIS_PASSWORD !== undefined) {
    throw new ConfigError('REDIS_PASSWORD: only for Sentinel or Cluster; for a single node put it in REDIS_URL (redis://:password@host:6379)');
  }
  return { kind: 'single', url: e.REDIS_URL };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = issue?.path.join('.') ?? 'environment';
    throw new ConfigError(`${name}: ${issue?.message ?? 'invalid'}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';
  const developmentDefaults: string[] = [];
  const simulated = e.KURIR_PROVIDER === 'simulator';

  function required(name: keyof typeof e, value: string | undefined, devDefault?: string): string {
    if (value !== undefined) return value;
    if (!production && devDefault !== undefined) {
      developmentDefaults.push(name);
      return devDefault;
    }
    throw new ConfigError(`${name}: required${production ? ' in production' : ''}`);
  }

  const secret = required('KURIR_SECRET', e.KURIR_SECRET, DEV_SECRET);
  if (secret.length < 32) throw new ConfigError('KURIR_SECRET: must be at least 32 characters');
  const apiKeys = parseApiKeys(required('KURIR_API_KEYS', e.KURIR_API_KEYS, DEV_API_KEYS));

  const topology = redisTopology(e);
  if (e.KURIR_ADMIN_TOKEN !== undefined && e.KURIR_ADMIN_TOKEN.length < 32) {
    throw new ConfigError('KURIR_ADMIN_TOKEN: must be at least 32 characters');
  }
  if (e.KURIR_ADMIN_TOKEN !== undefined && [...apiKeys.values()].includes(e.KURIR_ADMIN_TOKEN)) {
    throw new ConfigError('KURIR_ADMIN_TOKEN: must differ from every tenant API key');
  }
  if (production && simulated) {
    // The simulator's built-in webhook secret is public (it is in this file): anyone could forge receipts.
    throw new ConfigError('KURIR_PROVIDER: "simulator" is for development; set KURIR_PROVIDER=ycloud in production');
  }
  if (production && e.KURIR_DELIVERY_TIMEOUT_SECONDS < 15) {
    throw new ConfigError('KURIR_DELIVERY_TIMEOUT_SECONDS: must be 15–60 in production');
  }

  const publicUrl = e.KURIR_PUBLIC_URL ?? `http://127.0.0.1:${e.PORT}`;
  const simulatorBase = `http://127.0.0.1:${e.SIMULATOR_PORT}/v2`;
  const provider: Config['provider'] = simulated
    ? {
        kind: 'simulator',
        baseUrl: e.YCLOUD_BASE_URL ?? simulatorBase,
        apiKey: e.YCLOUD_API_KEY ?? SIM_API_KEY,
        webhookSecret: e.YCLOUD_WEBHOOK_SECRET ?? SIM_WEBHOOK_SECRET,
        whatsappFrom: e.YCLOUD_WHATSAPP_FROM ?? '+15550001000',
        smsSenderId: e.YCLOUD_SMS_SENDER_ID ?? 'Kurir',
        emailFrom: e.YCLOUD_EMAIL_FROM ?? 'Kurir <otp@kurir.example>',
        timeoutMs: e.YCLOUD_TIMEOUT_MS,
      }
    : {
        kind: 'ycloud',
        baseUrl: e.YCLOUD_BASE_URL ?? 'https://api.ycloud.com/v2',
        apiKey: required('YCLOUD_API_KEY', e.YCLOUD_API_KEY),
        webhookSecret: required('YCLOUD_WEBHOOK_SECRET', e.YCLOUD_WEBHOOK_SECRET),
        whatsappFrom: required('YCLOUD_WHATSAPP_FROM', e.YCLOUD_WHATSAPP_FROM),
        smsSenderId: e.YCLOUD_SMS_SENDER_ID,
        emailFrom: required('YCLOUD_EMAIL_FROM', e.YCLOUD_EMAIL_FROM),
        timeoutMs: e.YCLOUD_TIMEOUT_MS,
      };
  if (!/^https?:\/\/[^\s]+$/.test(provider.baseUrl)) throw new ConfigError('YCLOUD_BASE_URL: must be an http(s) URL');
  provider.baseUrl = provider.baseUrl.replace(/\/+$/, '');
  if (!/^\+[1-9]\d{6,14}$/.test(provider.whatsappFrom)) throw new ConfigError('YCLOUD_WHATSAPP_FROM: must be an E.164 number');

  return {
    production,
    http: { port: e.PORT, publicUrl: publicUrl.replace(/\/+$/, '') },
    redis: { url: e.REDIS_URL, keyPrefix: e.KURIR_KEY_PREFIX, topology },
    secret,
    apiKeys,
    adminToken: e.KURIR_ADMIN_TOKEN,
    provider,
    delivery: { timeoutSeconds: e.KURIR_DELIVERY_TIMEOUT_SECONDS },
    policyFile: e.KURIR_POLICY_FILE,
    retentionSeconds: e.KURIR_RECORD_RETENTION_SECONDS,
    log: { level: e.LOG_LEVEL, pretty: e.LOG_FORMAT === undefined ? !production && process.stdout.isTTY === true : e.LOG_FORMAT === 'pretty' },
    worker: { queues: parseQueues(e.WORKER_QUEUES), concurrency: e.WORKER_CONCURRENCY },
    metrics: { port: e.METRICS_PORT },
    simulator: {
      port: e.SIMULATOR_PORT,
      webhookUrl: e.SIMULATOR_WEBHOOK_URL ?? `${publicUrl.replace(/\/+$/, '')}/v1/webhooks/ycloud`,
      receiptDelayMs: e.SIMULATOR_RECEIPT_DELAY_MS,
      slowReceiptMs: e.SIMULATOR_SLOW_RECEIPT_MS,
    },
    developmentDefaults,
  };
}
