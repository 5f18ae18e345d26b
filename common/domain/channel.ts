/**
 * Channels Kurir can deliver a code over, and the locales it writes messages in.
 * Kept in one small module because nearly every other module speaks in these terms.
 */
export const CHANNELS = ['whatsapp', 'sms', 'email'] as const;
export type Channel = (typeof CHANNELS)[number];

export const PHONE_CHANNELS: readonly Channel[] = ['whatsapp', 'sms'];

export const LOCALES = ['en', 'id', 'pt-BR', 'es', 'hi'] as const;
export type Locale = (typeof LOCALES)[number];

export function isChannel(value: unknown): value is Channel {
  return typeof value === 'string' && (CHANNELS as readonly string[]).includes(value);
}

export function isLocale(value: unknown): value is Locale {
  return typeof value === 'string' && (LOCALES as readonly string[]).includes(value);
}
