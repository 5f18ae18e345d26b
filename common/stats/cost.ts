import type { Policy } from '../config/policy.js';
import type { Channel } from '../domain/channel.js';
import type { OutboundMessage } from '../providers/provider.js';
import { measureSms } from '../messages/sms-encoding.js';

/**
 * Estimated cost of messages, from the policy's price table. What is billed follows what the
 * providers charge for: a WhatsApp authentication template only once it is delivered, an SMS per
 * segment once the provider accepted it (delivered or not), an email per message once accepted.
 */
export type Prices = Policy['prices'];

/** Costs are summed in micro-units of the currency in Redis (HINCRBY takes integers). */
export const MICROS_PER_UNIT = 1_000_000;

/** Price of one billable unit on `channel` to `country` (ISO-2, or `ZZ` when unknown). */
export function unitPrice(prices: Prices, channel: Channel, country: string): number {
  const table = prices[channel];
  return Object.hasOwn(table.byCountry, country) ? (table.byCountry[country] ?? table.default) : table.default;
}

/** Billable units of a message the provider just accepted: SMS segments, one email, or 0 for WhatsApp (billed on delivery). */
export function unitsOnSend(message: OutboundMessage): number {
  switch (message.channel) {
    case 'sms':
      return Math.max(1, measureSms(message.text).segments);
    case 'email':
      return 1;
    case 'whatsapp':
      return 0;
  }
}

export function toMicros(amount: number): number {
  return Math.round(amount * MICROS_PER_UNIT);
}
