/**
 * SMS encodings and segment arithmetic (3GPP TS 23.038 / 23.040).
 *
 * Why this matters: one character outside the GSM 7-bit default alphabet switches the whole
 * message to UCS-2, which cuts a segment from 160 to 70 characters and usually doubles or
 * triples what the carrier charges. Latin-script OTP texts are therefore folded to GSM-7 when
 * that saves segments (see {@link foldToGsm7}); Devanagari cannot be, so Hindi stays UCS-2.
 */

/** GSM 03.38 default alphabet (one septet each), in table order. `\n` and `\r` are part of it. */
const GSM7_BASIC =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
/** GSM 03.38 extension table: each costs two septets (ESC + character). */
const GSM7_EXTENSION = '\f^{}\\[~]|€';

const BASIC = new Set(GSM7_BASIC);
const EXTENSION = new Set(GSM7_EXTENSION);

/** Single-segment and per-part capacities; concatenated parts lose room to the 6-octet UDH. */
const GSM7_SINGLE = 160;
const GSM7_PART = 153;
const UCS2_SINGLE = 70;
const UCS2_PART = 67;

export type SmsEncoding = 'GSM-7' | 'UCS-2';

/** How a text would travel as SMS: its encoding, its length in encoding units, and its segment count. */
export interface SmsSize {
  encoding: SmsEncoding;
  /** Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2. */
  units: number;
  segments: number;
}

/** True when every character of `text` is in the GSM-7 default alphabet or its extension table. */
export function isGsm7(text: string): boolean {
  for (const char of text) {
    if (!BASIC.has(char) && !EXTENSION.has(char)) return false;
  }
  return true;
}

/**
 * Measures a text as an SMS. Concatenated parts are filled the way encoders do it: an escape
 * sequence or a surrogate pair is never split across two parts, so the count can be one higher
 * than a plain `ceil(units / 153)`.
 */
export function measureSms(text: string): SmsSize {
  const encoding: SmsEncoding = isGsm7(text) ? 'GSM-7' : 'UCS-2';
  const widths: number[] = [];
  for (const char of text) {
    widths.push(encoding === 'GSM-7' ? (EXTENSION.has(char) ? 2 : 1) : char.length);
  }
  const units = widths.reduce((sum, width) => sum + width, 0);
  const single = encoding === 'GSM-7' ? GSM7_SINGLE : UCS2_SINGLE;
  if (units <= single) return { encoding, units, segments: units === 0 ? 0 : 1 };

  const part = encoding === 'GSM-7' ? GSM7_PART : UCS2_PART;
  let segments = 1;
  let used = 0;
  for (const width of widths) {
    if (used + width > part) {
      segments += 1;
      used = 0;
    }
    used += width;
  }
  return { encoding, units, segments };
}

/** Typographic characters that have a plain GSM-7 look-alike. */
const PUNCTUATION: ReadonlyMap<string, string> = new Map([
  ['\u2018', "'"],
  ['\u2019', "'"],
  ['\u201A', "'"],
  ['\u201C', '"'],
  ['\u201D', '"'],
  ['\u201E', '"'],
  ['\u2013', '-'],
  ['\u2014', '-'],
  ['\u2026', '...'],
  ['\u00A0', ' '],
  ['\u202F', ' '],
  ['\u2009', ' '],
]);

const COMBINING_MARKS = /[\u0300-\u036f]/g;

/**
 * Rewrites `text` into the GSM-7 alphabet by dropping diacritics the alphabet lacks
 * (`ç→c`, `ã→a`, `ó→o`) while keeping the accented letters it has (`é`, `à`, `ñ`, `ü`), and by
 * replacing curly quotes and dashes. Returns `undefined` when some character has no GSM-7 form
 * (Devanagari, CJK, emoji): such a text must go as UCS-2 unchanged.
 *
 * Dropping accents in SMS is the long-standing convention in Brazil and Spanish-speaking
 * markets precisely because of the segment cost; readers expect it and the words stay clear.
 */
export function foldToGsm7(text: string): string | undefined {
  let folded = '';
  for (const char of text) {
    if (BASIC.has(char) || EXTENSION.has(char)) {
      folded += char;
      continue;
    }
    const replacement = PUNCTUATION.get(char) ?? char.normalize('NFD').replace(COMBINING_MARKS, '');
    if (replacement === '' || !isGsm7(replacement)) return undefined;
    folded += replacement;
  }
  return folded;
}

/**
 * The text to hand to the SMS provider: unchanged when it is GSM-7 already or when folding
 * would not save a segment (correct spelling wins when it is free), folded otherwise.
 */
export function fitSmsText(text: string): string {
  if (isGsm7(text)) return text;
  const folded = foldToGsm7(text);
  if (folded === undefined) return text;
  return measureSms(folded).segments < measureSms(text).segments ? folded : text;
}
