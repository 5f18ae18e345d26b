import { randomBytes, randomInt } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { createCodeVault } from '../../common/security/code-vault.js';
import { createKeySpace, type KeySpace } from '../../common/store/keys.js';
import { freePort, startProcess, waitForHttp, type BenchProcess } from './processes.js';

/**
 * How the bench runs Kurir: its settings (one tenant, the bench policy, the minimum record
 * retention), the destinations it sends to, the deployments it starts (API alone, everything
 * in one process as `npm start`, every role in its own process) and a tracker that watches
 * delivery states in Redis.
 */

export const TENANT = 'bench';
export const API_KEY = 'kurir_bench_key_000000000001';
export const SECRET = 'kurir-bench-secret-0123456789abcdef0123456789abcdef';
export const RETENTION_SECONDS = 60;
export const AUTH = { authorization: `Bearer ${API_KEY}` } as const;

/** Settings shared by every run of every role. */
export interface KurirSettings {
  redisUrl: string;
  policyFile: string;
  logLevel: string;
  /** Node flags: CPU profiles go to this directory when set. */
  profileDir: string | undefined;
}

export function kurirEnv(settings: KurirSettings, prefix: string, ports: { api: number; simulator: number }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: settings.redisUrl,
    KURIR_KEY_PREFIX: prefix,
    KURIR_API_KEYS: `${TENANT}=${API_KEY}`,
    KURIR_SECRET: SECRET,
    KURIR_POLICY_FILE: settings.policyFile,
    KURIR_RECORD_RETENTION_SECONDS: String(RETENTION_SECONDS),
    KURIR_PROVIDER: 'simulator',
    LOG_LEVEL: settings.logLevel,
    LOG_FORMAT: 'json',
    PORT: String(ports.api),
    SIMULATOR_PORT: String(ports.simulator),
    KURIR_PUBLIC_URL: `http://127.0.0.1:${ports.api}`,
    ...extra,
  };
}

/**
 * The codes of verifications under `prefix`, opened from their records with the bench's secret
 * (the way a send worker opens one for a fallback), 1,000 reads a round trip. A verification
 * without a record is left out.
 */
export async function openCodes(redis: Redis, prefix: string, ids: readonly string[]): Promise<Map<string, string>> {
  const vault = createCodeVault(SECRET);
  const keys = createKeySpace(prefix);
  const codes = new Map<string, string>();
  for (let i = 0; i < ids.length; i += 1000) {
    const batch = ids.slice(i, i + 1000);
    const pipeline = redis.pipeline();
    for (const id of batch) pipeline.hget(keys.verification(id), 'codeSealed');
    const replies = (await pipeline.exec()) ?? [];
    batch.forEach((id, j) => {
      const sealed = replies[j]?.[1];
      if (typeof sealed === 'string') codes.set(id, vault.open(id, sealed));
    });
  }
  return codes;
}

/** The simulator's magic last-4 digits; a normal destination must avoid them. */
const MAGIC = new Set(['1001', '1002', '1003', '1004', '1005', '1006', '1007', '1008', '1009', '2001', '2004']);

/** A fresh random Indonesian mobile (`+62812` + 8 digits) that the simulator delivers normally. */
export function deliverableNumber(): string {
  let last4: string;
  do last4 = String(randomInt(10_000)).padStart(4, '0');
  while (MAGIC.has(last4));
  return `+62812${String(randomInt(10_000)).padStart(4, '0')}${last4}`;
}

/**
 * How many number blocks the end-to-end load spreads over. A block is `+62812` + 4 digits: a
 * number prefix as the send limits and the pumping guard see it (all but the last 4 digits).
 * Real traffic reuses prefixes — a country's operators hand out numbers in a bounded set of
 * blocks — so per-prefix state is O(prefixes), not O(verifications), as fresh random prefixes
 * (`deliverableNumber`) would make it.
 */
export const NUMBER_BLOCKS = 500;
let blockSerial = randomInt(1_000_000);

/**
 * A number in one of NUMBER_BLOCKS blocks that the simulator delivers normally, distinct from every
 * other one this process made (a counter walks blocks × last 4 digits; 5 million before it repeats).
 */
export function blockNumber(): string {
  for (;;) {
    blockSerial += 1;
    const block = String((blockSerial % NUMBER_BLOCKS) * Math.floor(10_000 / NUMBER_BLOCKS)).padStart(4, '0');
    const last4 = String(Math.floor(blockSerial / NUMBER_BLOCKS) % 10_000).padStart(4, '0');
    if (!MAGIC.has(last4)) return `+62812${block}${last4}`;
  }
}

/** A fresh number the simulator never confirms (`…1002`): its WhatsApp falls back after the timeout. */
export function neverDeliveredNumber(): string {
  return `+62812${String(randomInt(10_000)).padStart(4, '0')}1002`;
}

export function createBody(to: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ to, purpose: 'login', ...extra });
}

export function newBasePrefix(): string {
  return `kbench-${randomBytes(4).toString('hex')}`;
}

/** A running Kurir: where its API and simulator answer, and its processes by role. */
export interface Deployment {
  kind: 'api-only' | 'embedded' | 'split';
  prefix: string;
  apiUrl: string;
  simulatorUrl: string | undefined;
  processes: BenchProcess[];
  stop(): Promise<void>;
}

function profileFile(settings: KurirSettings, name: string): string | undefined {
  return settings.profileDir === undefined ? undefined : `${settings.profileDir}/${name}.cpuprofile`;
}

async function stopAll(processes: readonly BenchProcess[]): Promise<void> {
  // The API first (stop intake), then the rest; each is stopped even if another fails.
  for (const p of processes) await p.stop().catch(() => undefined);
}

/** `npm run start:api`: the API role alone; nothing consumes its queues. */
export async function startApiOnly(settings: KurirSettings, prefix: string): Promise<Deployment> {
  const ports = { api: await freePort(), simulator: await freePort() };
  const api = startProcess({ name: 'api', script: 'api/main.ts', env: kurirEnv(settings, prefix, ports), cpuProfile: profileFile(settings, 'api-only') });
  const apiUrl = `http://127.0.0.1:${ports.api}`;
  await waitForHttp(`${apiUrl}/healthz`, api);
  return { kind: 'api-only', prefix, apiUrl, simulatorUrl: undefined, processes: [api], stop: () => stopAll([api]) };
}

/** `npm start`: API, workers, scheduler and simulator in one process. */
export async function startEmbedded(settings: KurirSettings, prefix: string, extra: Record<string, string> = {}, label = 'embedded'): Promise<Deployment> {
  const ports = { api: await freePort(), simulator: await freePort() };
  const all = startProcess({ name: label, script: 'main.ts', env: kurirEnv(settings, prefix, ports, extra), cpuProfile: profileFile(settings, label) });
  const apiUrl = `http://127.0.0.1:${ports.api}`;
  const simulatorUrl = `http://127.0.0.1:${ports.simulator}`;
  await waitForHttp(`${apiUrl}/healthz`, all);
  await waitForHttp(`${simulatorUrl}/_simulator/healthz`, all);
  return { kind: 'embedded', prefix, apiUrl, simulatorUrl, processes: [all], stop: () => stopAll([all]) };
}

/** Every role in its own process: simulator, api, worker, scheduler (`npm run start:*`). */
export async function startSplit(settings: KurirSettings, prefix: string, extra: Record<string, string> = {}): Promise<Deployment> {
  const ports = { api: await freePort(), simulator: await freePort() };
  const env = kurirEnv(settings, prefix, ports, { SIMULATOR_WEBHOOK_URL: `http://127.0.0.1:${ports.api}/v1/webhooks/ycloud`, ...extra });
  const simulator = startProcess({ name: 'simulator', script: 'simulator/main.ts', env, cpuProfile: profileFile(settings, 'split-simulator') });
  const api = startProcess({ name: 'api', script: 'api/main.ts', env, cpuProfile: profileFile(settings, 'split-api') });
  const worker = startProcess({ name: 'worker', script: 'worker/main.ts', env, cpuProfile: profileFile(settings, 'split-worker') });
  const scheduler = startProcess({ name: 'scheduler', script: 'scheduler/main.ts', env, cpuProfile: profileFile(settings, 'split-scheduler') });
  const apiUrl = `http://127.0.0.1:${ports.api}`;
  const simulatorUrl = `http://127.0.0.1:${ports.simulator}`;
  await waitForHttp(`${simulatorUrl}/_simulator/healthz`, simulator);
  await waitForHttp(`${apiUrl}/healthz`, api);
  return {
    kind: 'split',
    prefix,
    apiUrl,
    simulatorUrl,
    processes: [api, worker, scheduler, simulator],
    stop: () => stopAll([api, worker, scheduler, simulator]),
  };
}

/** One provider call as the simulator logged it (`GET /_simulator/messages`). */
export interface SimulatorMessage {
  id: string;
  channel: 'whatsapp' | 'sms' | 'email';
  to: string;
  externalId?: string;
  httpStatus: number;
  receivedAt: number;
  outcome: string;
}

export async function simulatorMessages(simulatorUrl: string): Promise<SimulatorMessage[]> {
  const response = await fetch(`${simulatorUrl}/_simulator/messages`);
  return (await response.json()) as SimulatorMessage[];
}

/**
 * Reconciles provider calls with the verifications that were created: every verification must
 * have exactly one accepted send on `channel` for delivery `n` (externalId `<id>-<n>`).
 */
export function reconcile(messages: readonly SimulatorMessage[], ids: readonly string[], channel: SimulatorMessage['channel'], n: number) {
  const sends = new Map<string, number>();
  let refused = 0;
  for (const m of messages) {
    if (m.channel !== channel || m.externalId === undefined) continue;
    if (m.httpStatus !== 200) {
      refused += 1;
      continue;
    }
    sends.set(m.externalId, (sends.get(m.externalId) ?? 0) + 1);
  }
  let lost = 0;
  let duplicates = 0;
  for (const id of ids) {
    const count = sends.get(`${id}-${n}`) ?? 0;
    if (count === 0) lost += 1;
    else duplicates += count - 1;
  }
  return { expected: ids.length, lost, duplicates, refused };
}

/**
 * Watches a field of verification records (e.g. `d1:st`) until it reaches an accepted value,
 * polling Redis in pipelines; records when each id got there (performance.now(), within one
 * poll interval). The interval grows with the number of ids watched, to keep the bench's own
 * load on Redis small.
 */
export class StateTracker {
  readonly reachedAt = new Map<string, number>();
  private readonly pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private readonly waiters = new Set<() => void>();
  /** (time, pending count) after every poll, for backlog trends. */
  readonly samples: { at: number; pending: number }[] = [];
  private readonly keys: KeySpace;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly field: string,
    private readonly accepted: ReadonlySet<string>,
  ) {
    this.keys = createKeySpace(prefix);
  }

  watch(id: string): void {
    if (!this.reachedAt.has(id)) this.pending.add(id);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  start(): void {
    if (this.timer !== undefined) return;
    const loop = () => {
      const interval = this.pending.size > 1000 ? 500 : this.pending.size > 300 ? 200 : 100;
      this.timer = setTimeout(() => {
        this.poll().finally(() => {
          if (this.timer !== undefined) loop();
        });
      }, interval);
    };
    loop();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const ids = [...this.pending];
      for (let i = 0; i < ids.length; i += 2000) {
        const batch = ids.slice(i, i + 2000);
        const pipeline = this.redis.pipeline();
        for (const id of batch) pipeline.hget(this.keys.verification(id), this.field);
        const replies = (await pipeline.exec()) ?? [];
        const now = performance.now();
        batch.forEach((id, j) => {
          const value = replies[j]?.[1];
          if (typeof value === 'string' && this.accepted.has(value)) {
            this.pending.delete(id);
            this.reachedAt.set(id, now);
          }
        });
      }
      this.samples.push({ at: performance.now(), pending: this.pending.size });
      for (const waiter of [...this.waiters]) waiter();
    } finally {
      this.polling = false;
    }
  }

  /** Resolves true once nothing is pending, false after `timeoutMs`. */
  async drained(timeoutMs: number): Promise<boolean> {
    if (this.pending.size === 0) return true;
    this.start();
    return await new Promise<boolean>((resolve) => {
      const check = () => {
        if (this.pending.size === 0) finish(true);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      this.waiters.add(check);
    });
  }
}

/** Jobs waiting or running in a queue of a prefix (BullMQ's wait/active/prioritized/delayed). */
export async function queueDepth(redis: Redis, prefix: string, queue: string): Promise<{ waiting: number; active: number; delayed: number }> {
  const base = `{${prefix}-${queue}}:${queue}`;
  const [wait, active, prioritized, delayed] = await Promise.all([
    redis.llen(`${base}:wait`),
    redis.llen(`${base}:active`),
    redis.zcard(`${base}:prioritized`),
    redis.zcard(`${base}:delayed`),
  ]);
  return { waiting: wait + prioritized, active, delayed };
}

/**
 * Delivery timeouts armed now: a verification's timer moved before its expiry to a delivery's
 * deadline (due within `withinMs`: the delivery timeout) and the timeout jobs of their own.
 * BullMQ scores delayed jobs as timestamp × 4096 (+ a counter).
 */
export async function armedTimeouts(redis: Redis, prefix: string, withinMs: number): Promise<number> {
  const timers = `{${prefix}-verification-expiry}:verification-expiry:delayed`;
  const [moved, own] = await Promise.all([
    redis.zcount(timers, 0, (Date.now() + withinMs) * 4096),
    redis.zcard(`{${prefix}-delivery-timeout}:delivery-timeout:delayed`),
  ]);
  return moved + own;
}

/** Waits until the queues have nothing waiting or running (the pipeline is idle). */
export async function queuesIdle(redis: Redis, prefix: string, queues: readonly string[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const depths = await Promise.all(queues.map((queue) => queueDepth(redis, prefix, queue)));
    if (depths.every((d) => d.waiting === 0 && d.active === 0)) return true;
    await delay(50);
  }
  return false;
}
