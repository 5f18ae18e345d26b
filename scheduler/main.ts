import { loadConfig } from '../common/config/env.js';
import { closeInOrder, closeOnSignals, runMain } from '../common/runtime/lifecycle.js';
import { createServices } from '../common/runtime/services.js';
import { startSchedulerRole } from './scheduler.js';

/** Composition root of the scheduler process (`npm run start:scheduler`). */
runMain(async () => {
  const config = loadConfig();
  const services = createServices(config, { role: 'scheduler' });
  const scheduler = startSchedulerRole(services, { concurrency: config.worker.concurrency, connection: services.workerRedis });
  services.logger.info('scheduler started');
  closeOnSignals(() => closeInOrder([() => scheduler.close(), () => services.close()]), services.logger);
});
