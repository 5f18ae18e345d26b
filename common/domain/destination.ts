import { parsePhoneNumberWithError } from 'libphonenumber-js/max';
import { z } from 'zod';

/** Where a code goes: a phone number in E.164 with its country, or a normalised email address. */
export type Destination =
  | { kind: 'phone'; value: string; country: string | undefined; /** libphonenumber's type, e.g. MOBILE. */ numberType?: string | undefined }
  | { kind: 'email'; value: string; country: undefined };

export type DestinationProblem = 'not_e164' | 'invalid_number' | 'invalid_email';

/**
 * Only numbers that can receive an OTP on a handset. Fixed lines, premium-rate, shared-cost, VoIP
 * and similar types are refused: they cannot read an SMS, and premium and shared-cost numbers are
 * how SMS pumping turns our sends into someone's revenue.
 */
const ALLOWED_NUMBER_TYPES = new Set(['MOBILE', 'FIXED_LINE_OR_MOBILE']);

const emailSchema = z.email();
// Plain ASCII only: other scripts' digits and invisible characters are refused rather than
// "helpfully" normalised, so what we store is exactly what the client meant.
const PHONE_CHARS = /^\+[0-9 ().-]{6,24}$/;

export function parseDestination(raw: string): Destination | DestinationProblem {
  const input = raw.trim();
  if (input.includes('@')) {
    const address = input.toLowerCase();
    if (address.length > 254 || !emailSchema.safeParse(address).success) return 'invalid_email';
    return { kind: 'email', value: address, country: undefined };
  }
  if (!PHONE_CHARS.test(input)) return 'not_e164';
  try {
    const phone = parsePhoneNumberWithError(input);
    // With the full metadata a number is valid exactly when it has a type (libphonenumber's
    // isValid is getType() !== undefined): one pass over the type patterns instead of two.
    const numberType = phone.getType();
    if (numberType === undefined) return 'invalid_number';
    return { kind: 'phone', value: phone.number, country: phone.country, numberType };
  } catch {
    return 'invalid_number';
  }
}

/** Can this destination receive a code? Email always; phone numbers only of a mobile type. */
export function receivesCodes(destination: Destination): boolean {
  return destination.kind === 'email' || ALLOWED_NUMBER_TYPES.has(destination.numberType ?? '');
}
