import { startApiRole, type ApiRole } from './api/api-role.js';
import { startSchedulerRole } from './scheduler/scheduler.js';
import { startSimulator, type SimulatedMessage, type Simulator, type SimulatorSettings } from './simulator/simulator.js';
import type { ThreadedSimulator } from './simulator/threaded-simulator.js';
import { startWorkerRole } from './worker/worker.js';
import type { Config } from './common/config/env.js';
import type { Logger } from './common/observability/logger.js';
import { closeInOrder } from './common/runtime/lifecycle.js';
import { createServices, type Services } from './common/runtime/services.js';

export interface Embedded {
  api: ApiRole;
  services: Services;
  /** The in-process simulator (undefined with another provider, or when one was handed in). */
  simulator: Simulator | undefined;
  /** Where the simulator answers, whichever kind runs. */
  simulatorUrl: string | undefined;
  close(): Promise<void>;
}

/** The simulator's settings from the configuration, wherever it runs (in process, or on its own thread). */
export function simulatorOptions(config: Config): SimulatorSettings {
  return {
    port: config.simulator.port,
    apiKey: config.provider.apiKey,
    webhookSecret: config.provider.webhookSecret,
    webhookUrl: config.simulator.webhookUrl,
    receiptDelayMs: config.simulator.receiptDelayMs,
    slowReceiptMs: config.simulator.slowReceiptMs,
  };
}

/**
 * All roles in one process (the default for one machine, and what the end-to-end tests run):
 * the simulator (when `KURIR_PROVIDER=simulator`), the API, every worker queue and the scheduler.
 * The roles still talk only through Redis and HTTP, exactly as when split into processes.
 */
export async function startEmbedded(
  config: Config,
  options: {
    logger?: Logger;
    onSimulatedMessage?: (message: SimulatedMessage) => void;
    /** A simulator already running elsewhere (main.ts runs it on its own thread); used instead of an in-process one. */
    externalSimulator?: ThreadedSimulator;
  } = {},
): Promise<Embedded> {
  const external = config.provider.kind === 'simulator' ? options.externalSimulator : undefined;
  const simulator =
    config.provider.kind === 'simulator' && external === undefined
      ? await startSimulator({
          ...simulatorOptions(config),
          ...(options.onSimulatedMessage === undefined ? {} : { onMessage: options.onSimulatedMessage }),
        })
      : undefined;
  // The embedded simulator is the provider: point the adapter at wherever it actually listens
  // (tests use port 0), and its receipts at wherever the API actually listens.
  const simulated = simulator ?? external;
  const effective: Config =
    simulated === undefined ? config : { ...config, provider: { ...config.provider, baseUrl: `${simulated.url}/v2` } };
  const services = createServices(effective, { role: 'all', ...(options.logger === undefined ? {} : { logger: options.logger }) });
  const api = await startApiRole(services, { port: config.http.port });
  simulated?.setWebhookUrl(`${api.url}/v1/webhooks/ycloud`);
  const worker = startWorkerRole(services, {
    queues: config.worker.queues,
    concurrency: config.worker.concurrency,
    connection: services.workerRedis,
  });
  const scheduler = startSchedulerRole(services, { concurrency: config.worker.concurrency, connection: services.workerRedis });
  let closing: Promise<void> | undefined;
  return {
    api,
    services,
    simulator,
    simulatorUrl: simulated?.url,
    close: () =>
      (closing ??= closeInOrder([
        // The simulator first: it stands in for the outside world, which stops talking to us.
        async () => simulated?.close(),
        () => api.close(),
        () => worker.close(),
        () => scheduler.close(),
        () => services.close(),
      ])),
  };
}
