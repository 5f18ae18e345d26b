import { maskDestination } from '../common/observability/mask.js';
import type { ReceiptFailure, SimulatedMessage } from './simulator.js';

/** The line `npm start` prints per simulated message, so a newcomer can type the code into curl. */
export function describeSimulatedMessage(message: SimulatedMessage): string {
  const code = message.code === undefined ? '' : `  code ${message.code}`;
  return `[simulator] ${message.channel.padEnd(8)} → ${maskDestination(message.to)}${code}  (${message.outcome}, ${message.externalId ?? 'no externalId'})`;
}

/** The line printed when a receipt could not be posted after every try (Kurir not running, …). */
export function describeReceiptFailure(failure: ReceiptFailure): string {
  return `[simulator] receipt ${failure.eventType} ${failure.eventId} not delivered to ${failure.url} after ${failure.attempts} tries (${failure.reason})`;
}
