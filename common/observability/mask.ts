import metadata from 'libphonenumber-js/max/metadata';

/**
 * Masking for anything that reaches logs or console output: keep enough to tell two
 * destinations apart while debugging (country calling code and last two digits; first letter and
 * domain of an email), never the subscriber number or the whole address.
 */

/**
 * Every calling code libphonenumber knows, countries' and non-geographic ones (+800, +882…).
 * Calling codes are a prefix code (none is the start of another), so the code of a number is
 * the one 1–3 digit prefix found here: no parse of the whole number is needed for a log line.
 */
const CALLING_CODES: ReadonlySet<string> = new Set([
  ...Object.keys(metadata.country_calling_codes),
  ...Object.keys(metadata.nonGeographic),
]);

/**
 * The lengths libphonenumber's parse accepts (at least 3 digits, a national part of 2–17), so the
 * code shows for the same numbers as when masking parsed them. Past 18 digits, which no E.164
 * number has, parse sometimes still found a code after stripping a national prefix; such input
 * now shows none, the safe side for a mask.
 */
const MIN_NUMBER_DIGITS = 3;
const MIN_NATIONAL_DIGITS = 2;
const MAX_NATIONAL_DIGITS = 17;

/**
 * The calling code `digits` start with, or '' when they are no international number: then no
 * leading digits are shown at all rather than a guess at where the code ends.
 */
function callingCodeOf(digits: string): string {
  if (digits.length < MIN_NUMBER_DIGITS) return '';
  for (let length = 1; length <= 3; length += 1) {
    const prefix = digits.slice(0, length);
    if (CALLING_CODES.has(prefix)) {
      const national = digits.length - length;
      return national >= MIN_NATIONAL_DIGITS && national <= MAX_NATIONAL_DIGITS ? prefix : '';
    }
  }
  return '';
}

export function maskPhone(e164: string): string {
  const digits = e164.replace(/\D/g, '');
  const callingCode = callingCodeOf(digits);
  const hidden = Math.max(digits.length - callingCode.length - 2, 2);
  return `+${callingCode}${'•'.repeat(hidden)}${digits.length > 4 ? digits.slice(-2) : ''}`;
}

export function maskEmail(address: string): string {
  const at = address.lastIndexOf('@');
  if (at <= 0) return '•••';
  return `${address[0]}•••@${address.slice(at + 1)}`;
}

export function maskDestination(destination: string): string {
  return destination.includes('@') ? maskEmail(destination) : maskPhone(destination);
}
