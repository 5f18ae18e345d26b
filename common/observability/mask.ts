import { parsePhoneNumberWithError } from 'libphonenumber-js/max';

/**
 * Masking for anything that reaches logs or console output: keep enough to tell two
 * destinations apart while debugging (country calling code and last two digits; first letter and
 * domain of an email), never the subscriber number or the whole address.
 */
export function maskPhone(e164: string): string {
  const digits = e164.replace(/\D/g, '');
  let callingCode = '';
  try {
    callingCode = parsePhoneNumberWithError(`+${digits}`).countryCallingCode;
  } catch {
    // Not a parseable number: show no leading digits at all rather than guess where the code ends.
  }
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
