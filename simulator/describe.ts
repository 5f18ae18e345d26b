import { maskDestination } from '../common/observability/mask.js';
import type { SimulatedMessage } from './simulator.js';

/** The line `npm start` prints per simulated message, so a newcomer can type the code into curl. */
export function describeSimulatedMessage(message: SimulatedMessage): string {
  const code = message.code === undefined ? '' : `  code ${message.code}`;
  return `[simulator] ${message.channel.padEnd(8)} → ${maskDestination(message.to)}${code}  (${message.outcome}, ${message.externalId ?? 'no externalId'})`;
}
