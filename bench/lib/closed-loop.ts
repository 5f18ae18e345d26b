import autocannon from 'autocannon';

/**
 * Fixed-concurrency load (a closed model: `connections` requests in flight, each connection
 * sends its next request when the previous one is answered) with autocannon, for the
 * throughput figures: bare express, create, check. Every request can carry its own body or
 * path (unique destinations, one verification per check) and every answer can be inspected.
 */
export interface ClosedLoopOptions {
  url: string;
  connections: number;
  /** Seconds; ignored when `amount` is set. */
  durationSeconds: number;
  amount?: number | undefined;
  method: 'POST' | 'GET';
  headers: Record<string, string>;
  /** Called once per request: its path and body. */
  next: () => { path: string; body?: string | undefined };
  /** Called with every answer's status and body. */
  onResponse?: ((status: number, body: string) => void) | undefined;
  /** Status every answer should have; others are counted as `unexpected`. */
  expectStatus: number;
}

export interface ClosedLoopResult {
  requests: number;
  ok: number;
  unexpected: number;
  errors: number;
  seconds: number;
  /** Answers with the expected status per second. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export async function closedLoop(options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  let ok = 0;
  let unexpected = 0;
  // Our own clock from the first request to the last answer: autocannon's `duration` is coarse
  // for runs bounded by `amount`.
  let first: number | undefined;
  let last = 0;
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    pipelining: 1,
    ...(options.amount === undefined ? { duration: options.durationSeconds } : { amount: options.amount }),
    timeout: 20,
    requests: [
      {
        method: options.method,
        headers: options.headers,
        setupRequest: (request) => {
          first ??= performance.now();
          const next = options.next();
          return { ...request, path: next.path, ...(next.body === undefined ? {} : { body: next.body }) };
        },
        onResponse: (status, body) => {
          last = performance.now();
          if (status === options.expectStatus) ok += 1;
          else unexpected += 1;
          options.onResponse?.(status, body);
        },
      },
    ],
  });
  const seconds = first === undefined || last <= first ? result.duration : (last - first) / 1000;
  return {
    requests: ok + unexpected,
    ok,
    unexpected,
    errors: result.errors,
    seconds,
    rps: ok / seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
  };
}
