import { loadConfig } from '../common/config/env.js';
import { closeInOrder, closeOnSignals, runMain } from '../common/runtime/lifecycle.js';
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
  services.logger.info({ queues: config.worker.queues }, 'worker started');
  closeOnSignals(() => closeInOrder([() => worker.close(), () => services.close()]), services.logger);
});
