import { loadConfig } from '../common/config/env.js';
import { closeInOrder, closeOnSignals, runMain } from '../common/runtime/lifecycle.js';
import { createServices } from '../common/runtime/services.js';
import { startApiRole } from './api-role.js';

/** Composition root of the API process (`npm run start:api`). */
runMain(async () => {
  const config = loadConfig();
  const services = createServices(config, { role: 'api' });
  const api = await startApiRole(services, { port: config.http.port });
  services.logger.info({ url: api.url }, 'api listening');
  closeOnSignals(() => closeInOrder([() => api.close(), () => services.close()]), services.logger);
});
