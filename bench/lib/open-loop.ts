import { Agent, request } from 'node:http';

/**
 * Fixed arrival rate load (an open model): request i is sent at t0 + i/rate whether or not
 * earlier ones were answered, so a slow server meets a growing queue instead of a politely
 * waiting client. When the client itself falls behind schedule that is measured (`lagMs`) and
 * reported, never hidden.
 */
export interface Shot {
  index: number;
  /** performance.now() when it was due. */
  scheduledAt: number;
  sentAt: number;
  answeredAt: number | undefined;
  status: number | undefined;
  body: string | undefined;
  error: string | undefined;
}

export interface OpenLoopOptions {
  baseUrl: string;
  rate: number;
  count: number;
  headers: Record<string, string>;
  /** Request i: method, path and JSON body. */
  build: (index: number) => { method: 'POST' | 'GET'; path: string; body?: string | undefined };
  onAnswer?: (shot: Shot) => void;
  /** Sockets the client may open (requests beyond wait in the agent, their lag is measured). */
  maxSockets?: number;
}

export interface OpenLoopRun {
  shots: Shot[];
  /** Resolves when the last request was sent. */
  sent: Promise<void>;
  /** Resolves when every request was answered (or failed). */
  answered: Promise<void>;
  startedAt: number;
  /** performance.now() of the last scheduled send. */
  lastScheduledAt: number;
}

export function openLoop(options: OpenLoopOptions): OpenLoopRun {
  const url = new URL(options.baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256 });
  const shots: Shot[] = [];
  const interval = 1000 / options.rate;
  const startedAt = performance.now() + 20;
  let pending = 0;
  let next = 0;
  let resolveSent!: () => void;
  let resolveAnswered!: () => void;
  const sent = new Promise<void>((resolve) => (resolveSent = resolve));
  const answered = new Promise<void>((resolve) => (resolveAnswered = resolve));

  const fire = (index: number, scheduledAt: number) => {
    const spec = options.build(index);
    const shot: Shot = { index, scheduledAt, sentAt: performance.now(), answeredAt: undefined, status: undefined, body: undefined, error: undefined };
    shots.push(shot);
    pending += 1;
    const headers: Record<string, string | number> = { ...options.headers };
    if (spec.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(spec.body);
    }
    const finish = () => {
      shot.answeredAt = performance.now();
      pending -= 1;
      options.onAnswer?.(shot);
      if (next >= options.count && pending === 0) {
        agent.destroy();
        resolveAnswered();
      }
    };
    const req = request(
      { host: url.hostname, port: url.port, path: spec.path, method: spec.method, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          shot.status = res.statusCode;
          shot.body = Buffer.concat(chunks).toString('utf8');
          finish();
        });
        res.on('error', (error) => {
          shot.error = error.message;
          finish();
        });
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', (error) => {
      if (shot.answeredAt !== undefined) return;
      shot.error = error.message;
      finish();
    });
    req.end(spec.body);
  };

  const tick = () => {
    const now = performance.now();
    // Catch up on everything that is due: lateness is recorded, the schedule is kept.
    while (next < options.count && startedAt + next * interval <= now) {
      fire(next, startedAt + next * interval);
      next += 1;
    }
    if (next >= options.count) {
      resolveSent();
      if (pending === 0) {
        agent.destroy();
        resolveAnswered();
      }
      return;
    }
    setTimeout(tick, Math.max(0, startedAt + next * interval - performance.now()));
  };
  setTimeout(tick, 20);
  return { shots, sent, answered, startedAt, lastScheduledAt: startedAt + (options.count - 1) * interval };
}
