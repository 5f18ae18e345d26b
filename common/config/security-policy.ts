import { z } from 'zod';

/**
 * The abuse-resistance part of the policy: send limits, lockout, geo permissions, budgets and the
 * SMS-pumping guard. Defaults follow NIST SP 800-63B (failed attempts limited, at most 100) and
 * DESIGN.md; every value can be overridden globally (`security:`) and per tenant
 * (`tenants.<name>.security:`), merged key by key.
 */

const country = z.string().regex(/^[A-Z]{2}$/, 'ISO 3166-1 alpha-2, upper case');
const countryList = z.array(country).max(300);
const positive = z.number().int().min(0);

const geoRuleSchema = z.strictObject({
  /** When non-empty, only these countries; empty means every country. */
  allow: countryList,
  /** Never these countries (wins over allow). */
  deny: countryList,
});

const budgetSchema = z.strictObject({
  /** Messages per UTC day for this tenant and channel; null = unlimited. */
  dailyMessages: positive.nullable(),
  /** When exhausted: true refuses (no provider call); false lets the send through and only counts it. */
  failClosed: z.boolean(),
});

export const securitySchema = z.strictObject({
  limits: z.strictObject({
    destination: z.strictObject({
      /** Gap between two sends to one destination, doubling with each send in 24 h (30 s, 60 s, 120 s…). */
      cooldownSeconds: positive.max(3600),
      maxBackoffSeconds: positive.max(86_400),
      per10Minutes: positive.max(1000),
      per24Hours: positive.max(10_000),
    }),
    ip: z.strictObject({ distinctDestinationsPer10Minutes: positive.max(100_000) }),
    tenant: z.strictObject({ perSecond: positive.max(1_000_000) }),
    /** The number without its last 4 digits: one block of 10,000 numbers. */
    prefix: z.strictObject({ perHour: positive.max(1_000_000) }),
    country: z.strictObject({ perSecond: positive.max(1_000_000) }),
  }),
  lockout: z.strictObject({
    /** Wrong codes for one destination, across its verifications, before it is locked. */
    maxConsecutiveFailures: z.number().int().min(1).max(100),
    windowSeconds: z.number().int().min(60).max(86_400),
    lockSeconds: z.number().int().min(60).max(86_400),
    /** Hard ceiling per destination and 24 h, whatever the consecutive count (NIST: ≤ 100). */
    maxFailuresPer24Hours: z.number().int().min(1).max(100),
  }),
  geo: z.strictObject({
    allow: countryList,
    deny: countryList,
    channels: z.strictObject({ whatsapp: geoRuleSchema, sms: geoRuleSchema }),
  }),
  budgets: z.strictObject({ whatsapp: budgetSchema, sms: budgetSchema, email: budgetSchema }),
  pumping: z.strictObject({
    mode: z.enum(['enforce', 'shadow', 'off']),
    windowSeconds: z.number().int().min(300).max(7 * 86_400),
    graceSeconds: z.number().int().min(0).max(3600),
    minSends: z.number().int().min(10).max(1_000_000),
    minConversion: z.number().min(0).max(1),
    quarantineSeconds: z.number().int().min(60).max(7 * 86_400),
  }).refine((pumping) => pumping.graceSeconds < pumping.windowSeconds, {
    message: 'graceSeconds must be shorter than windowSeconds',
    path: ['graceSeconds'],
  }),
  /**
   * `explicit`: refusals (geo, number type, quarantine, lockout) answer 403/429 with the rule.
   * `silent`: they answer like a normal create (a decoy that never sends and never approves), so
   * a caller probing numbers learns nothing. Rate limits always answer 429: a client must back off.
   */
  refusals: z.enum(['explicit', 'silent']),
});

export type SecurityPolicy = z.infer<typeof securitySchema>;

const openGeo = { allow: [], deny: [] };

export const DEFAULT_SECURITY: SecurityPolicy = {
  limits: {
    destination: { cooldownSeconds: 30, maxBackoffSeconds: 3600, per10Minutes: 3, per24Hours: 10 },
    ip: { distinctDestinationsPer10Minutes: 10 },
    tenant: { perSecond: 100 },
    prefix: { perHour: 200 },
    country: { perSecond: 50 },
  },
  lockout: { maxConsecutiveFailures: 10, windowSeconds: 3600, lockSeconds: 3600, maxFailuresPer24Hours: 100 },
  geo: { allow: [], deny: [], channels: { whatsapp: openGeo, sms: openGeo } },
  budgets: {
    whatsapp: { dailyMessages: null, failClosed: false },
    sms: { dailyMessages: null, failClosed: true },
    email: { dailyMessages: null, failClosed: false },
  },
  pumping: { mode: 'enforce', windowSeconds: 3600, graceSeconds: 120, minSends: 100, minConversion: 0.2, quarantineSeconds: 3600 },
  refusals: 'explicit',
};

/** May a code for `country` go over `channel`? Deny lists win; an empty allow list allows all. */
export function geoAllows(security: SecurityPolicy, channel: 'whatsapp' | 'sms', country: string | undefined): boolean {
  const rules = [security.geo, security.geo.channels[channel]];
  for (const rule of rules) {
    if (country === undefined) {
      if (rule.allow.length > 0) return false;
      continue;
    }
    if (rule.deny.includes(country)) return false;
    if (rule.allow.length > 0 && !rule.allow.includes(country)) return false;
  }
  return true;
}
