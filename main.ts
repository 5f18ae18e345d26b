import { loadConfig } from './common/config/env.js';
import { closeOnSignals, runMain } from './common/runtime/lifecycle.js';
import { simulatorOptions, startEmbedded } from './embedded.js';
import { startThreadedSimulator, type ThreadedSimulator } from './simulator/threaded-simulator.js';

/**
 * `npm start`: every role in one process, with the provider simulator unless KURIR_PROVIDER=ycloud.
 * The simulator runs on a thread of its own (threaded-simulator.ts): it plays the provider, so
 * its work must not be billed to the pipeline's event loop.
 */
runMain(async () => {
  const config = loadConfig();
  let simulator: ThreadedSimulator | undefined;
  if (config.provider.kind === 'simulator') {
    simulator = await startThreadedSimulator({
      ...simulatorOptions(config),
      onLine: (line) => process.stdout.write(`${line}\n`),
    });
  }
  const kurir = await startEmbedded(config, simulator === undefined ? {} : { externalSimulator: simulator });
  kurir.services.logger.info(
    { api: kurir.api.url, provider: config.provider.kind, simulator: kurir.simulatorUrl },
    'kurir is running (api, worker, scheduler in one process)',
  );
  closeOnSignals(() => kurir.close(), kurir.services.logger);
});
