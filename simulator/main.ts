/**
 * Standalone provider simulator (`npm run start:simulator`). A composition root for a test double,
 * so it reads its few settings straight from the environment instead of through `common/config`.
 */
import { describeReceiptFailure, describeSimulatedMessage } from './describe.js';
import { startSimulator } from './simulator.js';

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return value;
}

async function main(): Promise<void> {
  const simulator = await startSimulator({
    port: intFromEnv('SIMULATOR_PORT', 4010),
    host: process.env['SIMULATOR_HOST'] ?? '127.0.0.1',
    apiKey: process.env['YCLOUD_API_KEY'] ?? 'sim_ycloud_api_key',
    webhookSecret: process.env['YCLOUD_WEBHOOK_SECRET'] ?? 'whsec_kurir_simulator_secret',
    webhookUrl: process.env['SIMULATOR_WEBHOOK_URL'] ?? 'http://127.0.0.1:3000/v1/webhooks/ycloud',
    receiptDelayMs: intFromEnv('SIMULATOR_RECEIPT_DELAY_MS', 150),
    slowReceiptMs: intFromEnv('SIMULATOR_SLOW_RECEIPT_MS', 45_000),
    onMessage: (message) => console.log(describeSimulatedMessage(message)),
    onReceiptFailed: (failure) => console.warn(describeReceiptFailure(failure)),
  });
  console.log(`[simulator] YCloud API on ${simulator.url}/v2 — messages at ${simulator.url}/_simulator/messages`);

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // Second signal: the operator wants out now.
      process.exit(1);
    }
    stopping = true;
    simulator.close().then(
      () => {
        // Re-raise with default handling so the exit status says which signal stopped us.
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        process.kill(process.pid, signal);
      },
      (error: unknown) => {
        console.error('[simulator] close failed', error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((error: unknown) => {
  console.error('[simulator] failed to start:', error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
