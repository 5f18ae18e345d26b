import { loadConfig } from '../common/config/env.js';
import { closeInOrder, closeOnSignals, runMain } from '../common/runtime/lifecycle.js';
import { serveMetrics } from '../common/runtime/metrics-server.js';
import { createServices } from '../common/runtime/services.js';
import { startSchedulerRole } from './scheduler.js';

/** Composition root of the scheduler process (`npm run start:scheduler`). */
runMain(async () => {
  const config = loadConfig();
  const services = createServices(config, { role: 'scheduler' });
  const scheduler = startSchedulerRole(services, { concurrency: config.worker.concurrency, connection: services.workerRedis });
  const metrics = await serveMetrics(services.metrics.registry, { port: config.metrics.port, logger: services.logger });
  services.logger.info('scheduler started');
  // Metrics after the timers: a scrape during the drain still sees the last jobs finish.
  closeOnSignals(() => closeInOrder([() => scheduler.close(), async () => metrics?.close(), () => services.close()]), services.logger);
});
