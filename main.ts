import { loadConfig } from './common/config/env.js';
import { closeOnSignals, runMain } from './common/runtime/lifecycle.js';
import { describeSimulatedMessage, startEmbedded } from './embedded.js';

/** `npm start`: every role in one process, with the provider simulator unless KURIR_PROVIDER=ycloud. */
runMain(async () => {
  const config = loadConfig();
  const kurir = await startEmbedded(config, {
    onSimulatedMessage: (message) => process.stdout.write(`${describeSimulatedMessage(message)}\n`),
  });
  kurir.services.logger.info(
    { api: kurir.api.url, provider: config.provider.kind, simulator: kurir.simulator?.url },
    'kurir is running (api, worker, scheduler in one process)',
  );
  closeOnSignals(() => kurir.close(), kurir.services.logger);
});
