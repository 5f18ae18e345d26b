import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { SimulatorSettings } from './simulator.js';

/**
 * The simulator on a worker thread of its own, for `npm start`. It stands in for YCloud, which in
 * production is another machine: on the pipeline's event loop its HTTP server and its receipt
 * POSTs would take a share of every verification's CPU that no real deployment pays, and hold
 * the pipeline back under load. On its own thread it keeps the same contract (HTTP on loopback),
 * and what it prints comes back to the main thread as text.
 *
 * Tests keep the in-process simulator (simulator.ts): they read its log and wait on its messages.
 */
export interface ThreadedSimulator {
  readonly url: string;
  setWebhookUrl(url: string): void;
  /** Stops the simulator and ends its thread. Idempotent. */
  close(): Promise<void>;
}

const CLOSE_GRACE_MS = 5_000;

/** Parent → thread. */
export type ParentRequest = { type: 'webhook-url'; url: string } | { type: 'close' };
/** Thread → parent. */
export type ThreadReport =
  | { type: 'ready'; url: string }
  | { type: 'failed'; message: string }
  | { type: 'line'; line: string }
  | { type: 'closed' };

export type ThreadedSimulatorOptions = SimulatorSettings & {
  /** Called with the line `npm start` prints for each simulated message (already masked). */
  onLine?: (line: string) => void;
};

/**
 * A worker thread does not inherit the TypeScript loader of `tsx main.ts`: when this module runs
 * from source, the thread registers tsx before importing its body; built JavaScript imports it directly.
 */
function threadBootstrap(): string {
  const fromSource = import.meta.url.endsWith('.ts');
  const body = new URL(`./simulator-thread.${fromSource ? 'ts' : 'js'}`, import.meta.url).href;
  if (!fromSource) return `import(${JSON.stringify(body)})`;
  const tsx = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(body)}); })`;
}

export async function startThreadedSimulator(options: ThreadedSimulatorOptions): Promise<ThreadedSimulator> {
  const { onLine, ...simulatorOptions } = options;
  const thread = new Worker(threadBootstrap(), { eval: true, workerData: simulatorOptions });
  const ready = new Promise<string>((resolve, reject) => {
    thread.on('message', (report: ThreadReport) => {
      if (report.type === 'ready') resolve(report.url);
      else if (report.type === 'failed') reject(new Error(`simulator: ${report.message}`));
      else if (report.type === 'line') onLine?.(report.line);
    });
    thread.once('error', reject);
    thread.once('exit', (code) => reject(new Error(`simulator thread exited (code ${code}) before it listened`)));
  });
  let url: string;
  try {
    url = await ready;
  } catch (error) {
    await thread.terminate();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    url,
    setWebhookUrl: (webhookUrl) => thread.postMessage({ type: 'webhook-url', url: webhookUrl } satisfies ParentRequest),
    close: () =>
      (closing ??= (async () => {
        const exited = once(thread, 'exit');
        thread.postMessage({ type: 'close' } satisfies ParentRequest);
        // The simulator cancels everything it owns on close; should anything still hold the
        // thread's loop, it is ended rather than left to keep the process alive.
        const timer = setTimeout(() => void thread.terminate(), CLOSE_GRACE_MS);
        await exited;
        clearTimeout(timer);
      })()),
  };
}
