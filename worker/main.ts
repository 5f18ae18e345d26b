import { loadConfig } from '../common/config/env.js';
import { closeInOrder, closeOnSignals, runMain } from '../common/runtime/lifecycle.js';
import { serveMetrics } from '../common/runtime/metrics-server.js';
import { createServices } from '../common/runtime/services.js';
import { startWorkerRole } from './worker.js';

/** Composition root of a worker process (`npm run start:worker`); `WORKER_QUEUES` picks its queues. */
runMain(async () => {
  const config = loadConfig();
  const services = createServices(config, { role: 'worker' });
  const worker = startWorkerRole(services, {
    queues: config.worker.queues,
    concurrency: config.worker.concurrency,
    connection: services.workerRedis,
  });
  const metrics = await serveMetrics(services.metrics.registry, { port: config.metrics.port, logger: services.logger });
  services.logger.info({ queues: config.worker.queues }, 'worker started');
  // Metrics after the workers: a scrape during the drain still sees the last jobs finish.
  closeOnSignals(() => closeInOrder([() => worker.close(), async () => metrics?.close(), () => services.close()]), services.logger);
});
