import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { TEST_REDIS_URL } from './redis.js';

export { indonesianMobile } from './numbers.js';

/**
 * Helpers for tests that run Kurir as real OS processes (`node --import tsx <role>/main.ts`), the
 * way `npm start` and an operator do: output captured line by line, bounded waits on output and
 * HTTP, and a {@link ProcessGroup} that kills whatever is still running, whatever the outcome.
 */

/** The repository root: the working directory of every spawned process, as for `npm start`. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** How often the waits below look again; the only pause these tests make. */
const POLL_MS = 25;

/** One line a process wrote, and when this test process read it. */
export interface OutputLine {
  stream: 'stdout' | 'stderr';
  text: string;
  /** Epoch ms at which the line reached the test. */
  at: number;
}

/** How a process ended: `code` for `exit(n)`, `signal` when a signal ended it. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Our settings, inherited or not, must not leak into a child: every Kurir variable comes from
 * the test, and `NODE_OPTIONS`/`NODE_TEST_CONTEXT` belong to the test runner.
 */
const NOT_INHERITED = /^(KURIR_|YCLOUD_|SIMULATOR_|WORKER_|LOG_|PORT$|REDIS_URL$|NODE_ENV$|NODE_OPTIONS$|NODE_TEST_CONTEXT$)/;

function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!NOT_INHERITED.test(name)) base[name] = value;
  }
  return { ...base, REDIS_URL: TEST_REDIS_URL, ...env };
}

/** A spawned Kurir process with everything it printed so far. */
export class KurirProcess {
  readonly lines: OutputLine[] = [];
  /** Resolves once the process ended and its output is fully read. */
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    this.read('stdout');
    this.read('stderr');
    this.exited = new Promise<ExitStatus>((resolve) => {
      const settle = (status: ExitStatus): void => {
        if (this.status !== undefined) return;
        this.status = status;
        this.notify();
        resolve(status);
      };
      // 'close' rather than 'exit': the last lines are read by then.
      child.once('close', (code, signal) => settle({ code, signal }));
      child.once('error', (error) => {
        this.lines.push({ stream: 'stderr', text: `[spawn error] ${error.message}`, at: Date.now() });
        settle({ code: null, signal: null });
      });
    });
  }

  /** True until the process has ended. */
  get running(): boolean {
    return this.status === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Lines of stdout (or stderr) as text. */
  textOf(stream: 'stdout' | 'stderr'): string[] {
    return this.lines.filter((line) => line.stream === stream).map((line) => line.text);
  }

  /** Every output line that is a JSON object: the pino log records. */
  jsonLogs(): Record<string, unknown>[] {
    const records: Record<string, unknown>[] = [];
    for (const line of this.lines) {
      if (!line.text.startsWith('{')) continue;
      try {
        const value: unknown = JSON.parse(line.text);
        if (typeof value === 'object' && value !== null && !Array.isArray(value)) records.push(value as Record<string, unknown>);
      } catch {
        // Not JSON after all; the console lines are checked separately.
      }
    }
    return records;
  }

  /** The tail of the output, for assertion messages. */
  transcript(maxLines = 40): string {
    const tail = this.lines.slice(-maxLines).map((line) => `  ${line.stream === 'stderr' ? 'ERR' : 'OUT'} ${line.text}`);
    const state = this.status === undefined ? 'running' : `exited code=${this.status.code} signal=${this.status.signal}`;
    return `--- ${this.name} (pid ${this.child.pid ?? '?'}, ${state}), last ${tail.length} lines:\n${tail.join('\n')}`;
  }

  /** Resolves with the first line (already read or still to come) that matches. */
  waitForLine(predicate: (line: OutputLine) => boolean, options: { timeoutMs: number; what: string }): Promise<OutputLine> {
    return this.waitUntil(() => this.lines.find(predicate), options);
  }

  /** Resolves with the first pino record that matches. */
  waitForLog(predicate: (record: Record<string, unknown>) => boolean, options: { timeoutMs: number; what: string }): Promise<Record<string, unknown>> {
    return this.waitUntil(() => this.jsonLogs().find(predicate), options);
  }

  /** Resolves with the exit status, or rejects when the process is still running after `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} still running after ${timeoutMs} ms\n${this.transcript()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal if the process still runs; returns whether it was sent. */
  signal(signal: NodeJS.Signals): boolean {
    return this.running && this.child.kill(signal);
  }

  private waitUntil<T>(find: () => T | undefined, options: { timeoutMs: number; what: string }): Promise<T> {
    const found = find();
    if (found !== undefined) return Promise.resolve(found);
    return new Promise<T>((resolve, reject) => {
      const finish = (action: () => void): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        action();
      };
      const check = (): void => {
        const match = find();
        if (match !== undefined) finish(() => resolve(match));
        else if (this.status !== undefined) finish(() => reject(new Error(`${this.name} exited before ${options.what}\n${this.transcript()}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}\n${this.transcript()}`))),
        options.timeoutMs,
      );
      this.listeners.add(check);
      check();
    });
  }

  private read(stream: 'stdout' | 'stderr'): void {
    let pending = '';
    const source = this.child[stream];
    source.setEncoding('utf8');
    source.on('data', (chunk: string) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      const at = Date.now();
      for (const text of parts) this.lines.push({ stream, text, at });
      if (parts.length > 0) this.notify();
    });
    source.on('end', () => {
      if (pending !== '') this.lines.push({ stream, text: pending, at: Date.now() });
      pending = '';
      this.notify();
    });
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** Every process a test file started; {@link ProcessGroup.killAll} goes in `after`. */
export class ProcessGroup {
  private readonly processes: KurirProcess[] = [];

  /** Starts `node --import tsx <script>` in the repository root with `env` over a cleaned environment. */
  spawn(name: string, script: string, env: Record<string, string>): KurirProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: REPO_ROOT,
      env: childEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const started = new KurirProcess(name, child);
    this.processes.push(started);
    return started;
  }

  /** Transcripts of every process, for a failure message. */
  transcripts(): string {
    return this.processes.map((p) => p.transcript()).join('\n');
  }

  /** SIGKILLs whatever still runs and waits until all have ended. */
  async killAll(): Promise<void> {
    for (const p of this.processes) p.signal('SIGKILL');
    await Promise.all(this.processes.map((p) => p.waitForExit(5000)));
  }
}

/** A TCP port that was free a moment ago (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Polls `find` every {@link POLL_MS} until it returns a value; errors from `find` count as "not
 * yet". `giveUp` names a reason to stop at once (e.g. the process exited); `describe` adds context.
 */
export async function poll<T>(
  find: () => Promise<T | undefined>,
  options: { timeoutMs: number; what: string; describe?: () => string; giveUp?: () => string | undefined },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError = '';
  for (;;) {
    const reason = options.giveUp?.();
    if (reason !== undefined) throw new Error(`gave up waiting for ${options.what}: ${reason}\n${options.describe?.() ?? ''}`);
    try {
      const found = await find();
      if (found !== undefined) return found;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() >= deadline) {
      const detail = lastError === '' ? '' : ` (last error: ${lastError})`;
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${detail}\n${options.describe?.() ?? ''}`);
    }
    await delay(POLL_MS);
  }
}

/** Waits until `GET url` answers 200, failing early when the process serving it has ended. */
export async function waitForHttp(url: string, owner: KurirProcess, timeoutMs: number): Promise<void> {
  await poll(
    async () => {
      const response = await fetch(url);
      await response.arrayBuffer();
      return response.status === 200 ? true : undefined;
    },
    {
      timeoutMs,
      what: `${url} to answer 200`,
      describe: () => owner.transcript(),
      giveUp: () => (owner.running ? undefined : `${owner.name} exited`),
    },
  );
}

/** A JSON answer, parsed; assert field by field. */
export interface JsonReply {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

/** One HTTP call with an optional bearer key and JSON body. */
export async function requestJson(method: string, url: string, options: { key?: string; body?: unknown } = {}): Promise<JsonReply> {
  const headers: Record<string, string> = {};
  if (options.key !== undefined) headers.Authorization = `Bearer ${options.key}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  const response = await fetch(url, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await response.text();
  let parsed: Record<string, unknown> = {};
  try {
    const value: unknown = text === '' ? {} : JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) parsed = value as Record<string, unknown>;
  } catch {
    parsed = {};
  }
  return { status: response.status, body: parsed, text };
}

/** A provider call the {@link HeldProvider} received and has not answered yet. */
export interface HeldRequest {
  method: string;
  path: string;
  body: string;
  /** Answers the call now (JSON body). */
  respond(status: number, body: unknown): void;
}

/** A stand-in YCloud that takes every call and answers only when the test says so. */
export interface HeldProvider {
  /** API root to use as `YCLOUD_BASE_URL`. */
  baseUrl: string;
  /** Resolves with the next call not yet handed out. */
  nextRequest(timeoutMs: number): Promise<HeldRequest>;
  close(): Promise<void>;
}

/** Starts a {@link HeldProvider} on a free loopback port: a send that stays in flight as long as the test wants. */
export async function startHeldProvider(): Promise<HeldProvider> {
  const received: HeldRequest[] = [];
  let handedOut = 0;
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      received.push({
        method: req.method ?? '',
        path: req.url ?? '',
        body,
        respond(status, payload) {
          if (res.writableEnded || res.destroyed) return;
          res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(payload));
        },
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v2`,
    async nextRequest(timeoutMs) {
      const request = await poll(async () => received[handedOut], { timeoutMs, what: 'a provider call' });
      handedOut += 1;
      return request;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
