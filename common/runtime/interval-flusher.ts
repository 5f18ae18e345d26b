import type { Logger } from 'pino';

export interface IntervalFlusherOptions {
  intervalMs: number;
  /** Where a write of a batch that failed is reported (it is dropped: counters are never retried). */
  logger: Pick<Logger, 'warn'> | undefined;
  /** The log message of a failed write, e.g. "stats could not be recorded". */
  failureMessage: string;
}

/**
 * The timing half of a batched write: a flush runs at most one interval after the first thing
 * was queued for it, one at a time, and once more on close. The owner says what a flush writes
 * (`drain`: the writes of everything pending, issued together); a write that fails is logged
 * once per flush and dropped, never thrown, because a batch of counters never ends a process.
 */
export class IntervalFlusher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: IntervalFlusherOptions,
    private readonly drain: () => Promise<unknown>[],
  ) {}

  /** Something was queued: make sure a flush follows within the interval. */
  schedule(): void {
    // Unref'd: pending counts never keep a process alive; close() writes them.
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.options.intervalMs).unref();
  }

  /** Flushes now, after the flush in progress if any (so close() also waits for a timer's). */
  async flush(): Promise<void> {
    const run = () => this.writePending();
    this.running = this.running.then(run, run);
    await this.running;
  }

  /** The last flush; call before the connection it writes on closes. */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private async writePending(): Promise<void> {
    let writes: Promise<unknown>[];
    try {
      writes = this.drain();
    } catch (error) {
      writes = [Promise.reject(error)];
    }
    const failed = (await Promise.allSettled(writes)).filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed.length === 0) return;
    const reason: unknown = failed[0]?.reason;
    this.options.logger?.warn({ writes: failed.length, err: { message: reason instanceof Error ? reason.message : String(reason) } }, this.options.failureMessage);
  }
}
