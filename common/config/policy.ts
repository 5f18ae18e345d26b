import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CHANNELS, LOCALES, type Channel, type Locale } from '../domain/channel.js';
import { ConfigError } from './env.js';
import { DEFAULT_SECURITY, securitySchema, type SecurityPolicy } from './security-policy.js';

/**
 * The policy file holds the tables an operator tunes without a code change: purposes and their
 * lifetimes, which countries get WhatsApp first, delivery timeouts, locales, WhatsApp template
 * names, and per-tenant overrides. Built-in defaults cover everything, so the file is optional
 * and may set only what it changes; it is merged over the defaults and validated as a whole.
 */

/** Codes never live longer than this, whatever a policy or a request asks for. */
export const MAX_TTL_SECONDS = 900;

const country = z.string().regex(/^[A-Z]{2}$/, 'ISO 3166-1 alpha-2, upper case');
const channel = z.enum(CHANNELS);
const locale = z.enum(LOCALES);
const plan = z
  .array(channel)
  .min(1)
  .refine((channels) => new Set(channels).size === channels.length, 'a channel appears twice in the plan')
  .refine((channels) => !channels.includes('email'), 'phone plans cannot contain email');
const timeoutSeconds = z.number().int().min(1).max(60);

const purposeSchema = z.strictObject({ ttlSeconds: z.number().int().min(30).max(MAX_TTL_SECONDS) });
const templateSchema = z.strictObject({ name: z.string().min(1).max(512), language: z.string().min(2).max(15) });
const countrySchema = z.strictObject({
  plan: plan.optional(),
  deliveryTimeoutSeconds: timeoutSeconds.optional(),
  locale: locale.optional(),
});
const tenantSchema = z.strictObject({
  brand: z.string().min(1).max(40).optional(),
  codeLength: z.number().int().min(4).max(10).optional(),
  maxAttempts: z.number().int().min(1).max(20).optional(),
  purposes: z.record(z.string(), purposeSchema).optional(),
  /** Overrides of the global `security` section, merged key by key and validated as a whole. */
  security: z.record(z.string(), z.unknown()).optional(),
});

/** Price of one billable unit (a WhatsApp authentication message, an SMS segment, an email), in `prices.currency`. */
const price = z.number().min(0).max(100);
const channelPrices = z.strictObject({ default: price, byCountry: z.record(country, price).default({}) });

const policySchema = z.strictObject({
  brand: z.string().min(1).max(40),
  code: z.strictObject({ length: z.number().int().min(4).max(10), maxAttempts: z.number().int().min(1).max(20) }),
  resend: z.strictObject({
    cooldownSeconds: z.number().int().min(0).max(3600),
    maxSendsPerVerification: z.number().int().min(1).max(20),
  }),
  purposes: z.record(z.string().regex(/^[a-z][a-z0-9_]{0,39}$/), purposeSchema),
  routing: z.strictObject({
    whatsappFirstCountries: z.array(country),
    whatsappFirstPlan: plan,
    defaultPlan: plan,
    /** Days a number stays marked "not on WhatsApp" after Meta said so (131026). */
    noWhatsAppCacheDays: z.number().min(0).max(90),
    countries: z.record(country, countrySchema),
  }),
  locales: z.strictObject({ fallback: locale, byCountry: z.record(country, locale) }),
  templates: z.strictObject({ whatsapp: z.record(locale, templateSchema) }),
  /** Messages per second per channel across all worker processes (the provider's cap). */
  throughput: z.strictObject({
    whatsapp: z.number().int().min(1).max(100_000),
    sms: z.number().int().min(1).max(100_000),
    email: z.number().int().min(1).max(100_000),
  }),
  security: securitySchema,
  /**
   * Estimated cost per billable unit, for `kurir_cost_total` and `/v1/stats`: WhatsApp
   * authentication is charged when delivered, SMS per segment and email per message when sent.
   */
  prices: z.strictObject({
    currency: z.string().regex(/^[A-Z]{3}$/, 'ISO 4217, upper case'),
    whatsapp: channelPrices,
    sms: channelPrices,
    email: channelPrices,
  }),
  tenants: z.record(z.string(), tenantSchema),
});

export type Policy = z.infer<typeof policySchema>;
export type TenantPolicy = z.infer<typeof tenantSchema>;

export const DEFAULT_POLICY: Policy = {
  brand: 'Kurir',
  code: { length: 6, maxAttempts: 5 },
  resend: { cooldownSeconds: 30, maxSendsPerVerification: 5 },
  purposes: {
    login: { ttlSeconds: 300 },
    signup: { ttlSeconds: 600 },
    payment: { ttlSeconds: 600 },
    transaction: { ttlSeconds: 600 },
    password_reset: { ttlSeconds: 600 },
    account_recovery: { ttlSeconds: 900 },
    sensitive_change: { ttlSeconds: 300 },
    abnormal_activity: { ttlSeconds: 300 },
  },
  routing: {
    // Markets where WhatsApp reaches nearly every phone and authentication templates are cheaper than SMS.
    whatsappFirstCountries: ['ID', 'IN', 'BR', 'CO', 'MX', 'AR', 'ZA', 'NG', 'MY', 'PE', 'CL', 'TR', 'SA', 'AE', 'EG', 'KE', 'PK'],
    whatsappFirstPlan: ['whatsapp', 'sms'],
    defaultPlan: ['sms'],
    noWhatsAppCacheDays: 7,
    countries: {},
  },
  locales: {
    fallback: 'en',
    byCountry: {
      ID: 'id',
      BR: 'pt-BR',
      PT: 'pt-BR',
      IN: 'hi',
      ES: 'es',
      MX: 'es',
      CO: 'es',
      AR: 'es',
      CL: 'es',
      PE: 'es',
      EC: 'es',
      VE: 'es',
      UY: 'es',
      PY: 'es',
      BO: 'es',
      GT: 'es',
      CR: 'es',
      PA: 'es',
      DO: 'es',
    },
  },
  templates: {
    whatsapp: {
      en: { name: 'kurir_otp', language: 'en_US' },
      id: { name: 'kurir_otp', language: 'id' },
      'pt-BR': { name: 'kurir_otp', language: 'pt_BR' },
      es: { name: 'kurir_otp', language: 'es' },
      hi: { name: 'kurir_otp', language: 'hi' },
    },
  },
  // WhatsApp: Meta's default 80 messages/s per business number; raise it after Meta's upgrade.
  throughput: { whatsapp: 80, sms: 100, email: 50 },
  security: DEFAULT_SECURITY,
  // PLACEHOLDERS, not a quote: plausible list prices in USD for WhatsApp authentication
  // templates and one SMS segment, so cost graphs show something out of the box. Replace them
  // with the rates of your own contract (provider markup, volume tiers, currency).
  // WhatsApp countries not listed cost `default`: list every country you route to WhatsApp.
  prices: {
    currency: 'USD',
    whatsapp: {
      default: 0.0,
      byCountry: {
        ID: 0.03, IN: 0.0014, BR: 0.0315, CO: 0.0077, MX: 0.024, AR: 0.0367, ZA: 0.0076, NG: 0.0067, MY: 0.018,
        PE: 0.0203, CL: 0.0353, TR: 0.0083, SA: 0.0107, AE: 0.0157, EG: 0.0129, KE: 0.0076, PK: 0.0198,
      },
    },
    sms: {
      default: 0.05,
      byCountry: {
        ID: 0.0415, IN: 0.003, BR: 0.018, MX: 0.03, CO: 0.009, AR: 0.04, US: 0.0079, CA: 0.0079, GB: 0.04, DE: 0.085,
        NG: 0.03, ZA: 0.02, TR: 0.01, PK: 0.035, MY: 0.025,
      },
    },
    email: { default: 0.0001, byCountry: {} },
  },
  tenants: {},
};

type PlainObject = Record<string, unknown>;

function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Refuses prototype-polluting keys anywhere in the file, not only where defaults exist. */
function assertNoForbiddenKeys(value: unknown, path: string): void {
  if (Array.isArray(value)) {
    value.forEach((item, index) => assertNoForbiddenKeys(item, `${path}[${index}]`));
    return;
  }
  if (!isPlainObject(value)) return;
  for (const [key, inner] of Object.entries(value)) {
    if (FORBIDDEN_KEYS.has(key)) throw new ConfigError(`policy: key "${path}${key}" is not allowed`);
    assertNoForbiddenKeys(inner, `${path}${key}.`);
  }
}

/** Objects merge key by key; arrays and scalars from the file replace the default. */
function mergeOver(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const merged: PlainObject = { ...base };
  for (const [key, value] of Object.entries(override)) {
    merged[key] = Object.hasOwn(base, key) ? mergeOver(base[key], value) : value;
  }
  return merged;
}

export function parsePolicy(document: unknown, source = 'policy'): Policy {
  if (document !== null && document !== undefined && !isPlainObject(document)) {
    throw new ConfigError(`${source}: must be a mapping at the top level`);
  }
  assertNoForbiddenKeys(document, '');
  const result = policySchema.safeParse(mergeOver(DEFAULT_POLICY, document ?? {}));
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConfigError(`${source}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  const policy = result.data;
  for (const [tenant, own] of Object.entries(policy.tenants)) {
    const merged = securitySchema.safeParse(mergeOver(policy.security, own.security ?? {}));
    if (!merged.success) {
      const issue = merged.error.issues[0];
      throw new ConfigError(`${source}: tenants.${tenant}.security.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
    }
  }
  for (const loc of LOCALES) {
    if (policy.templates.whatsapp[loc] === undefined) throw new ConfigError(`${source}: templates.whatsapp.${loc} is missing`);
  }
  return policy;
}

/** Reads the policy file (YAML or JSON) named by `KURIR_POLICY_FILE`, or returns the defaults. */
export function loadPolicy(file: string | undefined): Policy {
  if (file === undefined) return parsePolicy({});
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`KURIR_POLICY_FILE: cannot read ${file} (${(error as Error).message})`);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`KURIR_POLICY_FILE: ${file} is not valid YAML/JSON (${(error as Error).message})`);
  }
  return parsePolicy(document, `KURIR_POLICY_FILE ${file}`);
}

/** The policy as one tenant sees it: the tenant's overrides applied over the global values. */
export interface EffectivePolicy {
  brand: string;
  codeLength: number;
  maxAttempts: number;
  purposes: Record<string, { ttlSeconds: number }>;
  security: SecurityPolicy;
}

// Tenants are few and fixed at start, and their overrides were validated in parsePolicy: build
// each tenant's view once instead of merging on every request.
const effectiveCache = new WeakMap<Policy, Map<string, EffectivePolicy>>();

export function tenantPolicy(policy: Policy, tenant: string): EffectivePolicy {
  let perTenant = effectiveCache.get(policy);
  if (perTenant === undefined) {
    perTenant = new Map();
    effectiveCache.set(policy, perTenant);
  }
  const cached = perTenant.get(tenant);
  if (cached !== undefined) return cached;
  const own = policy.tenants[tenant] ?? {};
  const effective: EffectivePolicy = {
    brand: own.brand ?? policy.brand,
    codeLength: own.codeLength ?? policy.code.length,
    maxAttempts: own.maxAttempts ?? policy.code.maxAttempts,
    purposes: { ...policy.purposes, ...own.purposes },
    security: own.security === undefined ? policy.security : securitySchema.parse(mergeOver(policy.security, own.security)),
  };
  perTenant.set(tenant, effective);
  return effective;
}

export interface Route {
  plan: Channel[];
  locale: Locale;
  deliveryTimeoutSeconds: number;
}

/** Default channel plan, locale and delivery timeout for a destination country. */
export function routeForCountry(policy: Policy, countryCode: string | undefined, defaultTimeoutSeconds: number): Route {
  const override = countryCode === undefined ? undefined : policy.routing.countries[countryCode];
  const whatsappFirst = countryCode !== undefined && policy.routing.whatsappFirstCountries.includes(countryCode);
  return {
    plan: [...(override?.plan ?? (whatsappFirst ? policy.routing.whatsappFirstPlan : policy.routing.defaultPlan))],
    locale:
      override?.locale ??
      (countryCode === undefined ? undefined : policy.locales.byCountry[countryCode]) ??
      policy.locales.fallback,
    deliveryTimeoutSeconds: override?.deliveryTimeoutSeconds ?? defaultTimeoutSeconds,
  };
}
