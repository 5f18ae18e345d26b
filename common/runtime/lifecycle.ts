import type { Logger } from 'pino';

/**
 * Signal handling for every process: the first SIGTERM/SIGINT closes gracefully (stop intake,
 * let in-flight jobs finish, close queues and Redis, flush logs); a second one forces the exit.
 * After a graceful close the signal is re-raised so the exit status tells how the process ended.
 */
export function closeOnSignals(close: () => Promise<void>, logger: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down gracefully (send the signal again to force)');
    close()
      .catch((error: unknown) => logger.error({ err: error }, 'error during shutdown'))
      .finally(() => {
        // pino writes asynchronously: re-raise only once the last lines are out, or they are lost.
        logger.flush(() => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          process.kill(process.pid, signal);
        });
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/** Runs `steps` in order; every step runs even if an earlier one failed, the first error is rethrown. */
export async function closeInOrder(steps: readonly (() => Promise<unknown>)[]): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      first ??= error;
    }
  }
  if (first !== undefined) throw first;
}

/**
 * Runs a process's start-up. A configuration error prints one line naming the setting and exits
 * with EX_CONFIG (78), instead of a stack trace a newcomer has to decode.
 */
export function runMain(start: () => Promise<void>): void {
  start().catch((error: unknown) => {
    if (error instanceof Error && error.name === 'ConfigError') {
      process.stderr.write(`kurir: configuration error: ${error.message}\n`);
      process.exit(78);
    }
    process.stderr.write(`kurir: failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
