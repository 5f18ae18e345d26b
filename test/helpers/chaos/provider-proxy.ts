import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A tiny HTTP proxy between Kurir's YCloud adapter and the simulator, for the faults a real
 * provider has and the simulator does not:
 * - `answerDelayMs`: the call reaches the provider at once (the simulator records it and starts its
 *   receipts) but the answer is held back — the window in which a killed worker has sent a message
 *   without knowing it, i.e. the crash window between the provider's answer and our state write;
 * - `blackholeMs`: the call is never forwarded and the connection is dropped after a while — a
 *   provider that does not answer within `YCLOUD_TIMEOUT_MS`.
 * It records every call so a test can tell which answers never reached their worker.
 */
export interface ProxiedCall {
  /** Epoch ms the call reached the proxy. */
  at: number;
  /** `POST` for sends, `GET` for Kurir's lookups of SMS it is unsure about. */
  method: string;
  path: string;
  externalId: string | undefined;
  to: string | undefined;
  /** `answered`: the worker got the answer; `caller_gone`: the worker died before it could; `blackholed`: never forwarded. */
  fate: 'pending' | 'answered' | 'caller_gone' | 'blackholed' | 'upstream_error';
  /** Local TCP port of the caller's connection: tells which process made the call (see `socketPortsOf`). */
  callerPort: number | undefined;
  upstreamStatus: number | undefined;
  /** Epoch ms the simulator answered. */
  upstreamAt: number | undefined;
  /** Epoch ms the connection ended one way or the other. */
  endedAt: number | undefined;
}

export interface CallInfo {
  path: string;
  externalId: string | undefined;
  to: string | undefined;
}

export interface ProviderProxyOptions {
  /** Origin of the simulator, e.g. `http://127.0.0.1:4010`. */
  upstream: string;
  /** How long to hold the simulator's answer before passing it on (default 0). */
  answerDelayMs?: (call: CallInfo) => number;
  /** When it returns a number, the call is not forwarded and its connection is destroyed after that many ms. */
  blackholeMs?: (call: CallInfo) => number | undefined;
}

export interface ProviderProxy {
  /** `YCLOUD_BASE_URL` for Kurir. */
  readonly baseUrl: string;
  calls(): readonly ProxiedCall[];
  /** Calls not yet answered, dropped or blackholed. */
  inFlight(): number;
  close(): Promise<void>;
}

function peek(body: Buffer): { externalId: string | undefined; to: string | undefined } {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null) return { externalId: undefined, to: undefined };
    const record = parsed as Record<string, unknown>;
    return {
      externalId: typeof record.externalId === 'string' ? record.externalId : undefined,
      to: typeof record.to === 'string' ? record.to : undefined,
    };
  } catch {
    return { externalId: undefined, to: undefined };
  }
}

export async function startProviderProxy(options: ProviderProxyOptions): Promise<ProviderProxy> {
  const calls: ProxiedCall[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, action: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      action();
    }, ms);
    timers.add(timer);
  };

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const path = req.url ?? '/';
    const info: CallInfo = { path, ...peek(body) };
    const call: ProxiedCall = {
      at: Date.now(),
      method: req.method ?? 'POST',
      ...info,
      fate: 'pending',
      callerPort: req.socket.remotePort,
      upstreamStatus: undefined,
      upstreamAt: undefined,
      endedAt: undefined,
    };
    calls.push(call);
    // The caller (a worker) may die at any moment; remember whether it was still there to read the answer.
    // A live HTTP client never half-closes while it awaits the answer, so an ended socket means
    // the process behind it is gone (a write to it could still "succeed" into the kernel buffer).
    // Best effort only: node stops reading a keep-alive socket while a request is in progress, so
    // the end may go unseen; tests that must know use `callerPort` and `socketPortsOf` instead.
    let callerGone = false;
    res.once('close', () => {
      if (!res.writableFinished) callerGone = true;
    });
    const onEnd = (): void => {
      callerGone = true;
    };
    // Keep-alive sockets carry many calls: the listener goes when this call is over.
    req.socket.once('end', onEnd);
    res.once('finish', () => req.socket.off('end', onEnd));

    const hole = options.blackholeMs?.(info);
    if (hole !== undefined) {
      call.fate = 'blackholed';
      later(hole, () => {
        call.endedAt = Date.now();
        req.socket.off('end', onEnd);
        res.destroy();
      });
      return;
    }

    let status: number;
    let text: string;
    let headers: Record<string, string>;
    try {
      const forwarded: Record<string, string> = {};
      for (const name of ['x-api-key', 'content-type', 'accept']) {
        const value = req.headers[name];
        if (typeof value === 'string') forwarded[name] = value;
      }
      const method = req.method ?? 'POST';
      const response = await fetch(`${options.upstream}${path}`, {
        method,
        headers: forwarded,
        ...(method === 'GET' || method === 'HEAD' ? {} : { body }),
      });
      status = response.status;
      text = await response.text();
      headers = { 'content-type': response.headers.get('content-type') ?? 'application/json' };
      const retryAfter = response.headers.get('retry-after');
      if (retryAfter !== null) headers['retry-after'] = retryAfter;
    } catch {
      call.fate = 'upstream_error';
      call.endedAt = Date.now();
      req.socket.off('end', onEnd);
      res.destroy();
      return;
    }
    call.upstreamStatus = status;
    call.upstreamAt = Date.now();
    const answer = (): void => {
      call.endedAt = Date.now();
      if (callerGone || res.destroyed || req.socket.readableEnded) {
        call.fate = 'caller_gone';
        req.socket.off('end', onEnd);
        return;
      }
      call.fate = 'answered';
      res.writeHead(status, headers).end(text);
    };
    const hold = options.answerDelayMs?.(info) ?? 0;
    if (hold > 0) later(hold, answer);
    else answer();
  }

  const server = createServer((req, res) => {
    onRequest(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v2`,
    calls: () => calls,
    inFlight: () => calls.filter((call) => call.fate === 'pending' || (call.fate === 'blackholed' && call.endedAt === undefined)).length,
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Local TCP ports of the sockets `pid` holds (Linux `/proc`), read just before killing a process:
 * a proxied call whose `callerPort` is among them was made by that process.
 */
export function socketPortsOf(pid: number): Set<number> {
  // Synchronous on purpose: it runs at the instant of a kill, and the libuv thread pool that
  // async fs calls queue on can be busy for seconds on a loaded machine.
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target = '';
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match?.[1] !== undefined) inodes.add(match[1]);
    }
  } catch {
    return new Set();
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const inode = fields[9];
      if (local === undefined || inode === undefined || !inodes.has(inode)) continue;
      ports.add(Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16));
    }
  }
  return ports;
}
