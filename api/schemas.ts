import { z } from 'zod';
import { CALLBACK_URL_MAX_LENGTH, checkCallbackUrl } from '../common/callbacks/callback-url.js';
import { CHANNELS } from '../common/domain/channel.js';

/**
 * Request schemas. Strict objects: an unknown field is an error rather than silently ignored,
 * so a client's typo (`chanel`) fails loudly instead of sending over the wrong channel.
 */

const printable = /^[\x20-\x7E]*$/;

/**
 * The rules that hold in every mode; create-verification.ts adds the production ones (https only,
 * no loopback/private/link-local IP literals) from the process's configuration.
 */
const callbackUrl = z
  .string()
  .min(1)
  .max(CALLBACK_URL_MAX_LENGTH)
  .superRefine((value, ctx) => {
    const checked = checkCallbackUrl(value, { production: false });
    if (!checked.ok) ctx.addIssue({ code: 'custom', message: checked.message });
  })
  .meta({
    format: 'uri',
    description:
      'Where Kurir posts this verification\'s signed events (see `webhooks` in this document). An `https://` URL without credentials ' +
      'or fragment; `http://`, `localhost` and loopback/private/link-local IP addresses are refused in production.',
  });

export const createVerificationSchema = z.strictObject({
  to: z.string().min(3).max(320),
  purpose: z.string().min(1).max(40).regex(/^[a-z][a-z0-9_]*$/, 'lower-case letters, digits and _'),
  channel: z.enum(['auto', ...CHANNELS]).optional(),
  locale: z.string().min(2).max(35).regex(/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/, 'a BCP 47 language tag').optional(),
  ttlSeconds: z.number().int().min(60).max(900).optional(),
  codeLength: z.number().int().min(4).max(10).optional(),
  callbackUrl: callbackUrl.optional(),
  context: z
    .strictObject({
      ip: z.union([z.ipv4(), z.ipv6()]).optional(),
      userId: z.string().max(128).regex(printable).optional(),
      deviceId: z.string().max(128).regex(printable).optional(),
    })
    .optional(),
});
export type CreateVerificationRequest = z.infer<typeof createVerificationSchema>;

export const checkSchema = z.strictObject({
  code: z.string().regex(/^[0-9]{4,10}$/, '4 to 10 ASCII digits'),
});

export const resendSchema = z.strictObject({ channel: z.enum(CHANNELS).optional() });

export const cancelSchema = z.strictObject({});

/** Ids are ours; anything not shaped like one is answered as "not found" without touching Redis. */
export const VERIFICATION_ID = /^ver_[A-Za-z0-9]{10,40}$/;

/** Idempotency keys: visible ASCII, bounded, as in the IETF Idempotency-Key draft's examples. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7E]{1,255}$/;

export const webhookEnvelopeSchema = z.looseObject({
  id: z.string().min(1).max(128),
  type: z.string().min(1).max(100),
  apiVersion: z.string().max(10).optional(),
  createTime: z.string().max(40).optional(),
});

export function zodIssues(error: z.ZodError): { path: string; message: string }[] {
  return error.issues.slice(0, 20).map((issue) => ({ path: issue.path.join('.') || '(body)', message: issue.message }));
}
