import { startApiRole, type ApiRole } from './api/api-role.js';
import { startSchedulerRole } from './scheduler/scheduler.js';
import { startSimulator, type SimulatedMessage, type Simulator } from './simulator/simulator.js';
export { describeSimulatedMessage } from './simulator/describe.js';
import { startWorkerRole } from './worker/worker.js';
import type { Config } from './common/config/env.js';
import type { Logger } from './common/observability/logger.js';
import { closeInOrder } from './common/runtime/lifecycle.js';
import { createServices, type Services } from './common/runtime/services.js';

export interface Embedded {
  api: ApiRole;
  services: Services;
  simulator: Simulator | undefined;
  close(): Promise<void>;
}

/**
 * All roles in one process (the default for one machine, and what the end-to-end tests run):
 * the simulator (when `KURIR_PROVIDER=simulator`), the API, every worker queue and the scheduler.
 * The roles still talk only through Redis and HTTP, exactly as when split into processes.
 */
export async function startEmbedded(
  config: Config,
  options: { logger?: Logger; onSimulatedMessage?: (message: SimulatedMessage) => void } = {},
): Promise<Embedded> {
  const simulator =
    config.provider.kind === 'simulator'
      ? await startSimulator({
          port: config.simulator.port,
          apiKey: config.provider.apiKey,
          webhookSecret: config.provider.webhookSecret,
          webhookUrl: config.simulator.webhookUrl,
          receiptDelayMs: config.simulator.receiptDelayMs,
          slowReceiptMs: config.simulator.slowReceiptMs,
          ...(options.onSimulatedMessage === undefined ? {} : { onMessage: options.onSimulatedMessage }),
        })
      : undefined;
  // The embedded simulator is the provider: point the adapter at wherever it actually listens
  // (tests use port 0), and its receipts at wherever the API actually listens.
  const effective: Config =
    simulator === undefined ? config : { ...config, provider: { ...config.provider, baseUrl: `${simulator.url}/v2` } };
  const services = createServices(effective, { role: 'all', ...(options.logger === undefined ? {} : { logger: options.logger }) });
  const api = await startApiRole(services, { port: config.http.port });
  simulator?.setWebhookUrl(`${api.url}/v1/webhooks/ycloud`);
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
    close: () =>
      (closing ??= closeInOrder([
        // The simulator first: it stands in for the outside world, which stops talking to us.
        async () => simulator?.close(),
        () => api.close(),
        () => worker.close(),
        () => scheduler.close(),
        () => services.close(),
      ])),
  };
}
