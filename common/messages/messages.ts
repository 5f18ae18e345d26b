import { LOCALES, type Locale } from '../domain/channel.js';
import type { Policy } from '../config/policy.js';
import { CATALOG, type LocaleMessages, type MessageValues } from './catalog.js';
import { fitSmsText } from './sms-encoding.js';

/**
 * Localized OTP messages for SMS and email, and the choice of locale for a verification.
 *
 * Pure functions: the brand and the code are the only variables, nothing is logged here (the
 * rendered text contains the code), and errors never echo the values they reject.
 */

/** What every renderer needs. */
export interface MessageInput {
  locale: Locale;
  /** Tenant or service name from configuration; treated as untrusted text. */
  brand: string;
  /** The one-time code, 4–10 ASCII digits. */
  code: string;
  /** Whole minutes the code stays valid, ≥ 1; see {@link minutesUntil}. */
  expiresInMinutes: number;
}

/** A rendered email: `text` is the plain-text alternative of `html`. */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

const PLURAL_RULES: ReadonlyMap<Locale, Intl.PluralRules> = new Map(
  LOCALES.map((locale) => [locale, new Intl.PluralRules(locale)] as const),
);

const CODE_PATTERN = /^[0-9]{4,10}$/;
// Control characters, line/paragraph separators and bidi overrides: a brand containing them
// could inject lines into an SMS, headers into an email subject, or reverse text to spoof the
// code. Zero-width joiners (Cf, but needed by Devanagari and emoji) are left alone.
const UNSAFE_IN_BRAND = /[\p{Cc}\u2028\u2029\u200E\u200F\u202A-\u202E\u2066-\u2069]/gu;

function cleanBrand(brand: string): string {
  const cleaned = brand.replace(UNSAFE_IN_BRAND, ' ').replace(/\s+/gu, ' ').trim();
  if (cleaned === '') throw new RangeError('brand must contain visible text');
  return cleaned;
}

function messagesFor(input: MessageInput): { messages: LocaleMessages; values: MessageValues } {
  const messages = CATALOG[input.locale];
  // The catalogue is keyed by Locale, but callers may hold an unchecked string cast to Locale.
  if (messages === undefined) throw new RangeError('locale is not supported');
  if (!CODE_PATTERN.test(input.code)) throw new RangeError('code must be 4–10 ASCII digits');
  const minutes = input.expiresInMinutes;
  if (!Number.isSafeInteger(minutes) || minutes < 1) throw new RangeError('expiresInMinutes must be a whole number ≥ 1');
  const rules = PLURAL_RULES.get(input.locale) ?? new Intl.PluralRules(input.locale);
  const form = messages.minutes[rules.select(minutes)] ?? messages.minutes.other;
  return { messages, values: { brand: cleanBrand(input.brand), code: input.code, minutes: form(minutes) } };
}

/**
 * The SMS text: code first, then brand, expiry and the do-not-share warning.
 *
 * Measured with brand "Acme", 6 digits, 5 minutes (see test/unit/messages.test.ts): en 99,
 * id 106, pt-BR 104, es 101 GSM-7 septets (one segment each, still one with a 40-character
 * brand); hi 66 UCS-2 units (one segment up to an 8-character brand, two up to 40).
 * Portuguese and Spanish are folded to GSM-7 (`código` → `codigo`; `é`, `ñ` stay, being
 * GSM-7) because the accented text would cost two UCS-2 segments instead of one.
 */
export function renderSms(input: MessageInput): string {
  const { messages, values } = messagesFor(input);
  return fitSmsText(messages.sms(values));
}

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}

// Inline styles only: Gmail and Outlook drop <style> blocks and external sheets. Colours keep
// WCAG AA contrast on white (#18181b ≈ 17:1, #52525b ≈ 7.7:1).
const FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,'Noto Sans','Noto Sans Devanagari',Helvetica,Arial,sans-serif";
const MONO = "ui-monospace,SFMono-Regular,Menlo,Consolas,'Liberation Mono','Courier New',monospace";

/**
 * The email: subject with code and brand (visible in the inbox list without opening), a
 * plain-text body, and a small self-contained HTML document with the code in a large
 * monospace line. The brand is cleaned of control characters (no header injection through
 * the subject) and HTML-escaped everywhere it appears in the markup.
 */
export function renderEmail(input: MessageInput): RenderedEmail {
  const { messages, values } = messagesFor(input);
  const subject = messages.emailSubject(values);
  const intro = messages.emailIntro(values);
  const expiry = `${messages.emailExpiry(values)} ${messages.doNotShare}`;
  const ignore = messages.ignoreIfNotRequested;

  const text = [intro, '', values.code, '', expiry, '', ignore, ''].join('\n');

  const lang = escapeHtml(input.locale);
  const html = [
    '<!DOCTYPE html>',
    `<html lang="${lang}" dir="ltr">`,
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="color-scheme" content="light">',
    `<title>${escapeHtml(subject)}</title>`,
    '</head>',
    `<body style="margin:0;padding:24px 12px;background-color:#f4f4f5;color:#18181b;font-family:${FONT};font-size:16px;line-height:1.5;">`,
    `<div role="article" aria-roledescription="email" aria-label="${escapeHtml(subject)}" lang="${lang}" style="max-width:480px;margin:0 auto;padding:32px 24px;background-color:#ffffff;border-radius:8px;">`,
    `<h1 style="margin:0 0 16px;font-size:20px;font-weight:600;color:#18181b;">${escapeHtml(values.brand)}</h1>`,
    `<p style="margin:0 0 8px;">${escapeHtml(intro)}</p>`,
    // letter-spacing separates the digits visually without inserting characters, so a copy of
    // the code pastes as typed.
    `<p style="margin:0 0 24px;font-family:${MONO};font-size:32px;font-weight:700;letter-spacing:6px;color:#18181b;">${escapeHtml(values.code)}</p>`,
    `<p style="margin:0 0 16px;">${escapeHtml(expiry)}</p>`,
    `<p style="margin:0;font-size:14px;color:#52525b;">${escapeHtml(ignore)}</p>`,
    '</div>',
    '</body>',
    '</html>',
    '',
  ].join('\n');

  return { subject, text, html };
}

// Primary language subtag → our locale. One Portuguese and one Spanish are all we write, so
// every region maps onto them (pt-PT reads pt-BR fine; es-ES reads our neutral Spanish).
// `in` is the withdrawn ISO 639 code for Indonesian that Java and old Android still send.
const LANGUAGE_TO_LOCALE: ReadonlyMap<string, Locale> = new Map([
  ['en', 'en'],
  ['id', 'id'],
  ['in', 'id'],
  ['pt', 'pt-BR'],
  ['es', 'es'],
  ['hi', 'hi'],
]);

const TAG_SHAPE = /^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$/;

function localeForTag(tag: string): Locale | undefined {
  const normalized = tag
    .trim()
    .replace(/[.@].*$/, '') // POSIX forms such as pt_BR.UTF-8 or ca_ES@valencia
    .replace(/_/g, '-')
    .toLowerCase();
  if (!TAG_SHAPE.test(normalized)) return undefined;
  const language = normalized.split('-', 1)[0] ?? '';
  return LANGUAGE_TO_LOCALE.get(language);
}

/**
 * True when {@link resolveLocale} would pick a locale from this tag itself, rather than falling
 * through to the country or the policy fallback.
 */
export function isSupportedLocaleTag(tag: string): boolean {
  return localeForTag(tag) !== undefined;
}

/**
 * Picks the message locale: the requested BCP 47 tag when we write that language (matched on
 * the primary subtag, case-insensitive, `_` accepted for `-`), else the policy's locale for the
 * destination country (ISO 3166-1 alpha-2, any case), else the policy fallback.
 */
export function resolveLocale(
  requested: string | undefined,
  countryCode: string | undefined,
  policy: Pick<Policy, 'locales'>,
): Locale {
  const fromRequest = requested === undefined ? undefined : localeForTag(requested);
  if (fromRequest !== undefined) return fromRequest;
  if (countryCode !== undefined) {
    const country = countryCode.trim().toUpperCase();
    const byCountry = policy.locales.byCountry;
    // hasOwn: a record lookup must not reach Object.prototype.
    if (/^[A-Z]{2}$/.test(country) && Object.hasOwn(byCountry, country)) {
      const locale = byCountry[country];
      if (locale !== undefined) return locale;
    }
  }
  return policy.locales.fallback;
}

const MINUTE_MS = 60_000;
/**
 * Slack for the milliseconds-to-seconds between creating a verification and rendering its
 * first message (queue pickup, provider lookup), so a fresh 5-minute code still says 5.
 */
const RENDER_GRACE_MS = 10_000;

/**
 * Whole minutes to print as the code's lifetime: rounded DOWN after a 10-second grace, and at
 * least 1.
 *
 * Why down and not up: the message is a promise to the reader. Overstating is the harmful
 * direction — a user told "5 minutes" at 4 min 10 s left who types the code at 4 min 30 s gets
 * "expired" and must start over — while understating by under a minute costs nothing. Ceil
 * would overstate by up to 59 s on every SMS fallback (sent 15–60 s after creation); plain
 * floor would print "4 minutes" for a code created a moment ago with a 5-minute TTL. The grace
 * keeps the configured TTL on first sends and never overstates by more than 10 s, except that
 * under 50 s left still prints 1 (there is no honest smaller whole number to print).
 *
 * Examples: 300 s → 5, 292 s → 5, 4 min 10 s → 4, 270 s (after a 30 s fallback) → 4, 20 s → 1.
 */
export function minutesUntil(expiresAtMs: number, nowMs: number): number {
  if (!Number.isFinite(expiresAtMs) || !Number.isFinite(nowMs)) throw new RangeError('times must be finite numbers');
  return Math.max(1, Math.floor((expiresAtMs - nowMs + RENDER_GRACE_MS) / MINUTE_MS));
}
