/**
 * The body of the simulator's worker thread (see threaded-simulator.ts): starts the simulator with
 * the options it was given and answers the parent's two requests. Every accepted send is reported
 * as the line `npm start` prints for it, already masked, so nothing but text crosses the thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { describeReceiptFailure, describeSimulatedMessage } from './describe.js';
import { startSimulator, type SimulatorSettings } from './simulator.js';
import type { ParentRequest, ThreadReport } from './threaded-simulator.js';

const port = parentPort;
if (port === null) throw new Error('simulator-thread.ts runs only as a worker thread');
const report = (message: ThreadReport) => port.postMessage(message);

try {
  const simulator = await startSimulator({
    ...(workerData as SimulatorSettings),
    onMessage: (message) => report({ type: 'line', line: describeSimulatedMessage(message) }),
    onReceiptFailed: (failure) => report({ type: 'line', line: describeReceiptFailure(failure) }),
  });
  port.on('message', (request: ParentRequest) => {
    if (request.type === 'webhook-url') {
      simulator.setWebhookUrl(request.url);
    } else {
      void simulator.close().then(() => {
        report({ type: 'closed' });
        // Nothing of ours is left on this thread's loop; let it end.
        port.close();
      });
    }
  });
  report({ type: 'ready', url: simulator.url });
} catch (error) {
  report({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
}
