import { z } from 'zod';
import {
  CALLBACK_EVENT_ID_HEADER,
  CALLBACK_SIGNATURE_HEADER,
  CALLBACK_TOLERANCE_SECONDS,
  CALLBACK_USER_AGENT,
} from '../common/callbacks/callback-signature.js';
import { callbackEventSchema, type CallbackEventType } from '../common/jobs/catalogue.js';
import { CHANNELS, LOCALES } from '../common/domain/channel.js';
import { DELIVERY_REASONS, DELIVERY_STATUSES, VERIFICATION_STATUSES } from '../common/domain/verification.js';
import { ERROR_CODES, type ErrorCode } from '../common/errors.js';
import type { Refusal } from '../common/security/send-gate.js';
import { IDEMPOTENCY_KEY, VERIFICATION_ID, checkSchema, createVerificationSchema, resendSchema, webhookEnvelopeSchema } from './schemas.js';

/**
 * The OpenAPI 3.1 description of Kurir's HTTP API, served as `GET /openapi.json`.
 *
 * Request bodies are generated from the zod schemas the handlers validate with (api/schemas.ts),
 * so the document cannot drift from validation. Response bodies are written here by hand; the
 * end-to-end contract test (test/e2e/openapi-contract.test.ts) drives the real API and checks
 * every answer it gets against them. The document is built once per process
 * (`openApiDocument()`), never per request.
 */

// ---------------------------------------------------------------------------------------------
// A small typed model of the parts of OpenAPI 3.1 this document uses.
// ---------------------------------------------------------------------------------------------

/** A JSON Schema (2020-12, the OpenAPI 3.1 dialect). Keywords are open-ended by design. */
export interface SchemaObject {
  [keyword: string]: unknown;
}

export interface ReferenceObject {
  $ref: string;
  summary?: string;
  description?: string;
}

export interface ExampleObject {
  summary?: string;
  description?: string;
  value: unknown;
}

export interface MediaTypeObject {
  schema?: SchemaObject;
  examples?: Record<string, ExampleObject>;
}

export interface HeaderObject {
  description?: string;
  required?: boolean;
  schema: SchemaObject;
}

export interface ParameterObject {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  description?: string;
  required?: boolean;
  schema: SchemaObject;
  example?: unknown;
}

export interface RequestBodyObject {
  description?: string;
  required?: boolean;
  content: Record<string, MediaTypeObject>;
}

export interface ResponseObject {
  description: string;
  headers?: Record<string, HeaderObject | ReferenceObject>;
  content?: Record<string, MediaTypeObject>;
}

export type SecurityRequirementObject = Record<string, string[]>;

export interface OperationObject {
  operationId: string;
  summary: string;
  description?: string;
  tags?: string[];
  security?: SecurityRequirementObject[];
  parameters?: (ParameterObject | ReferenceObject)[];
  requestBody?: RequestBodyObject;
  responses: Record<string, ResponseObject | ReferenceObject>;
}

export interface PathItemObject {
  summary?: string;
  parameters?: (ParameterObject | ReferenceObject)[];
  get?: OperationObject;
  post?: OperationObject;
}

export interface SecuritySchemeObject {
  type: 'http';
  scheme: string;
  bearerFormat?: string;
  description?: string;
}

export interface ServerObject {
  url: string;
  description?: string;
}

export interface TagObject {
  name: string;
  description?: string;
}

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: {
    title: string;
    version: string;
    summary?: string;
    description?: string;
    license?: { name: string; identifier?: string };
  };
  servers?: ServerObject[];
  tags: TagObject[];
  paths: Record<string, PathItemObject>;
  /** Requests Kurir makes to the tenant (its `callbackUrl`), keyed by event type. */
  webhooks?: Record<string, PathItemObject>;
  components: {
    schemas: Record<string, SchemaObject>;
    parameters: Record<string, ParameterObject>;
    headers: Record<string, HeaderObject>;
    securitySchemes: Record<string, SecuritySchemeObject>;
  };
}

// ---------------------------------------------------------------------------------------------
// Constants shared with the code (kept next to what they describe).
// ---------------------------------------------------------------------------------------------

/** Matches package.json's version (the unit test checks it). */
export const API_DOCUMENT_VERSION = '0.1.0';

/** The same pattern api/app.ts applies to an incoming X-Request-Id (the unit test compares them). */
export const REQUEST_ID_PATTERN = '^[A-Za-z0-9._:-]{1,100}$';

/** Body limits of api/app.ts (`JSON_LIMIT`, `WEBHOOK_LIMIT`), for the descriptions. */
const JSON_LIMIT_TEXT = '16 KiB';
const WEBHOOK_LIMIT_TEXT = '256 KiB';

const BEARER = 'bearerAuth';
const BEARER_SECURITY: SecurityRequirementObject[] = [{ [BEARER]: [] }];

const ref = (kind: 'schemas' | 'parameters' | 'headers', name: string): ReferenceObject => ({ $ref: `#/components/${kind}/${name}` });
const schemaRef = (name: string): SchemaObject => ({ $ref: `#/components/schemas/${name}` });

/**
 * JSON Schema of a request schema, as zod validates it (`io: 'input'`: what a client may send).
 * `$schema` is dropped: inside an OpenAPI 3.1 document Schema Objects are not resource roots and
 * take the document's dialect (JSON Schema 2020-12, which is also zod's target here).
 */
function fromZod(schema: z.ZodType): SchemaObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'throw' });
  return rest;
}

/**
 * The `rule` a 403 `destination_not_allowed` names, per refusal kind of the send gate. Typed
 * against `Refusal` so a new refusal kind answered with this code fails to compile until it is
 * documented here.
 */
type NotAllowedRule = Extract<Refusal, { kind: 'number_type' | 'geo' | 'quarantine' }>['rule'];
const NOT_ALLOWED_RULES: Record<NotAllowedRule, string> = {
  number_type: 'not a mobile number (fixed-line, premium-rate, shared-cost…)',
  geo: 'the country is not allowed for any channel of the plan',
  pumping_guard: 'the number range is quarantined by the SMS-pumping guard',
};
const LOCKOUT_RULE: Extract<Refusal, { kind: 'lockout' }>['rule'] = 'destination_lockout';

/** The send limits of the gate (common/security/send-gate.ts `limitRules`), as `rule` names them. */
const LIMIT_RULES_TEXT =
  '`destination_cooldown` (growing gap between two sends to one destination), `destination_10m`, `destination_24h`, ' +
  '`tenant_rate` (per second), `ip_destinations` (distinct destinations per `context.ip` in 10 minutes), `prefix_rate` ' +
  '(per hour and block of 10,000 numbers), `country_rate` (per second)';

const dateTime: SchemaObject = { type: 'string', format: 'date-time' };
const nullableDateTime: SchemaObject = { type: ['string', 'null'], format: 'date-time' };

/** `if code is one of codes then these members are present (and match)`, for the Problem schema. */
function whenCode(codes: readonly ErrorCode[], members: Record<string, SchemaObject>): SchemaObject {
  return {
    if: { type: 'object', required: ['code'], properties: { code: codes.length === 1 ? { const: codes[0] } : { enum: [...codes] } } },
    then: { type: 'object', required: Object.keys(members), properties: members },
  };
}

// ---------------------------------------------------------------------------------------------
// Component schemas.
// ---------------------------------------------------------------------------------------------

function componentSchemas(): Record<string, SchemaObject> {
  const errorCodes = Object.keys(ERROR_CODES);
  return {
    // Requests: generated from the zod schemas the handlers use.
    CreateVerificationRequest: {
      ...fromZod(createVerificationSchema),
      description:
        'A new verification. `to` is an E.164 phone number (normalised with libphonenumber-js) or an email address. ' +
        '`channel` pins the first channel (the end user\'s choice); the policy\'s later channels stay as fallbacks. ' +
        'Unknown fields are refused (400 `validation_failed`).',
    },
    CheckRequest: { ...fromZod(checkSchema), description: 'The code the end user typed.' },
    ResendRequest: {
      ...fromZod(resendSchema),
      description: 'Optional channel for the new delivery; without it the channel of the latest delivery is used.',
    },
    YCloudEvent: {
      ...fromZod(webhookEnvelopeSchema),
      description: 'A YCloud webhook event (for example `whatsapp.message.updated`, `sms.message.updated`). Other members are read by the provider adapter.',
    },

    // Shared vocabulary.
    VerificationId: { type: 'string', pattern: VERIFICATION_ID.source, examples: ['ver_3f9a1c0b7d2e4a6b8c0d1e2f'] },
    Channel: { type: 'string', enum: [...CHANNELS] },
    Locale: { type: 'string', enum: [...LOCALES], description: 'Locale the messages are written in.' },
    VerificationStatus: {
      type: 'string',
      enum: [...VERIFICATION_STATUSES],
      description: 'A pending verification past its `expiresAt` is reported as `expired`.',
    },
    Plan: {
      type: 'array',
      items: schemaRef('Channel'),
      minItems: 1,
      description: 'The ordered channels of the verification; a fallback moves to the next one.',
    },

    // Responses.
    Delivery: {
      type: 'object',
      description: 'One message of the verification over one channel (attempt `n` = 1, 2, …).',
      required: [
        'n', 'channel', 'provider', 'status', 'reason', 'errorCode', 'queuedAt', 'sentAt', 'deliveredAt', 'failedAt',
        'fellBackTo', 'deliveredAfterFallback',
      ],
      properties: {
        n: { type: 'integer', minimum: 1 },
        channel: schemaRef('Channel'),
        provider: { type: ['string', 'null'], description: 'Provider that took the message, once known.' },
        status: {
          type: 'string',
          enum: [...DELIVERY_STATUSES],
          description: '`queued`, `retrying` and `sending` are Kurir\'s own; the others mirror provider receipts. Statuses only move forward.',
        },
        reason: {
          type: 'string',
          enum: [...DELIVERY_REASONS],
          description: 'Why this delivery was started: the first one, a fallback (`failed`, `timeout`, `rejected`), a resend, or the end user\'s channel choice.',
        },
        errorCode: { type: ['string', 'null'], description: 'Provider error code of a failed delivery (for WhatsApp the Meta code, e.g. `131026`).' },
        queuedAt: dateTime,
        sentAt: nullableDateTime,
        deliveredAt: nullableDateTime,
        failedAt: nullableDateTime,
        fellBackTo: { type: ['integer', 'null'], minimum: 1, description: 'Delivery number this one fell back to.' },
        deliveredAfterFallback: { type: 'boolean', description: 'A delivered/read receipt arrived after the fallback had gone out.' },
      },
    },
    Verification: {
      type: 'object',
      description: 'A verification with its delivery timeline (`GET /v1/verifications/{id}`).',
      required: [
        'id', 'status', 'to', 'purpose', 'locale', 'plan', 'channel', 'attemptsRemaining', 'createdAt', 'expiresAt', 'approvedAt', 'callbackUrl',
        'deliveries',
      ],
      properties: {
        id: schemaRef('VerificationId'),
        status: schemaRef('VerificationStatus'),
        to: { type: 'string', description: 'The destination, normalised: E.164 number or lower-cased email address.' },
        purpose: { type: 'string' },
        locale: schemaRef('Locale'),
        plan: schemaRef('Plan'),
        channel: { ...schemaRef('Channel'), description: 'Channel of the latest delivery.' },
        attemptsRemaining: { type: 'integer', minimum: 0, description: 'Check attempts left; 0 once the verification is no longer pending.' },
        createdAt: dateTime,
        expiresAt: dateTime,
        approvedAt: nullableDateTime,
        callbackUrl: { type: ['string', 'null'], format: 'uri', description: 'Where this verification\'s events are posted (see `webhooks`), as normalised; `null` without one.' },
        deliveries: { type: 'array', items: schemaRef('Delivery') },
      },
    },
    CreatedVerification: {
      type: 'object',
      description:
        'The verification just created (`status: pending`; its first delivery is queued), or, replaying a create, the same verification ' +
        'in its current status. The delivery timeline is at `GET /v1/verifications/{id}`.',
      required: ['id', 'status', 'to', 'purpose', 'locale', 'plan', 'channel', 'attemptsRemaining', 'createdAt', 'expiresAt'],
      properties: {
        id: schemaRef('VerificationId'),
        status: { ...schemaRef('VerificationStatus'), description: '`pending` for a new verification; a replay reports the current status.' },
        to: { type: 'string', description: 'The destination, normalised: E.164 number or lower-cased email address.' },
        purpose: { type: 'string' },
        locale: schemaRef('Locale'),
        plan: schemaRef('Plan'),
        channel: { ...schemaRef('Channel'), description: 'Channel of the first delivery (of the latest one, in a replay).' },
        attemptsRemaining: { type: 'integer', minimum: 0, description: 'Check attempts left; 0 once the verification is no longer pending.' },
        createdAt: dateTime,
        expiresAt: dateTime,
      },
    },
    CheckResult: {
      type: 'object',
      description:
        'Outcome of a check. `approved` (once; a code approves a single time), `pending` (wrong code, attempts left), `max_attempts`, ' +
        '`expired`, `canceled`. An unknown id, another tenant\'s id, an expired and an already approved verification all answer `expired`.',
      required: ['id', 'status', 'valid', 'attemptsRemaining'],
      properties: {
        id: { type: 'string', description: 'The id of the request path, echoed.' },
        status: { type: 'string', enum: ['approved', 'pending', 'max_attempts', 'expired', 'canceled'] },
        valid: { type: 'boolean', description: '`true` only with `status: approved`.' },
        attemptsRemaining: { type: 'integer', minimum: 0 },
      },
    },
    ResendResult: {
      type: 'object',
      required: ['id', 'status', 'delivery', 'channel'],
      properties: {
        id: schemaRef('VerificationId'),
        status: { type: 'string', const: 'pending' },
        delivery: { type: 'integer', minimum: 2, description: 'Number `n` of the delivery just queued.' },
        channel: schemaRef('Channel'),
      },
    },
    CancelResult: {
      type: 'object',
      required: ['id', 'status'],
      properties: {
        id: schemaRef('VerificationId'),
        status: { type: 'string', const: 'canceled' },
      },
    },
    WebhookAck: {
      type: 'object',
      required: ['received'],
      properties: {
        received: { type: 'boolean', const: true },
        ignored: {
          type: 'boolean',
          const: true,
          description: 'The event type is not a receipt Kurir uses, or its message is not one Kurir knows (any more); acknowledged so it is not retried.',
        },
        duplicate: { type: 'boolean', const: true, description: 'Changed nothing: the event was already applied, or the delivery is past its status.' },
      },
    },
    ...callbackEventSchemas(),
    StatsSummary: {
      type: 'object',
      description:
        'The calling tenant\'s delivery funnel over a window, from the per-minute counters Kurir keeps in Redis for 8 days. ' +
        'Rates are `null` when their denominator is 0, percentiles when there is no sample. With `channel`, `created` counts by the ' +
        'first channel of the plan, `sent`/`delivered`/cost by the message\'s channel, `fallbacks` by the channel fallen back from, ' +
        '`approved`/`expired`/`maxAttempts` by the channel of the latest delivery (so the conversion of a fallback channel can exceed 1).',
      required: ['from', 'to', 'filters', 'created', 'approved', 'expired', 'maxAttempts', 'conversion', 'deliveries', 'fallbacks', 'timeToDeliver', 'timeToVerify', 'cost'],
      properties: {
        from: { ...dateTime, description: 'Start of the window, widened to a whole minute (inclusive).' },
        to: { ...dateTime, description: 'End of the window, widened to a whole minute (exclusive).' },
        filters: {
          type: 'object',
          required: ['country', 'channel'],
          properties: {
            country: { type: ['string', 'null'], pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2; `ZZ` is email and unknown.' },
            channel: { anyOf: [schemaRef('Channel'), { type: 'null' }] },
          },
        },
        created: { type: 'integer', minimum: 0, description: 'Verifications created (refused and silently refused creates are not).' },
        approved: { type: 'integer', minimum: 0 },
        expired: { type: 'integer', minimum: 0 },
        maxAttempts: { type: 'integer', minimum: 0, description: 'Verifications ended by too many wrong codes.' },
        conversion: { type: ['number', 'null'], minimum: 0, description: '`approved / created`.' },
        deliveries: {
          type: 'object',
          required: ['sent', 'delivered', 'deliveryRate'],
          properties: {
            sent: { type: 'integer', minimum: 0, description: 'Messages the provider accepted (fallbacks and resends included).' },
            delivered: { type: 'integer', minimum: 0, description: 'Messages that reached delivered or read (once each).' },
            deliveryRate: { type: ['number', 'null'], minimum: 0, description: '`delivered / sent`.' },
          },
        },
        fallbacks: {
          type: 'object',
          required: ['count', 'rate'],
          properties: {
            count: { type: 'integer', minimum: 0, description: 'Fallbacks to the next channel (failed, timeout, rejected).' },
            rate: { type: ['number', 'null'], minimum: 0, description: '`count / created`.' },
          },
        },
        timeToDeliver: schemaRef('StatsPercentiles'),
        timeToVerify: schemaRef('StatsPercentiles'),
        cost: {
          type: 'object',
          description: 'Estimated from the policy\'s price table: WhatsApp when delivered, SMS per segment and email when sent.',
          required: ['total', 'currency', 'perApproved'],
          properties: {
            total: { type: 'number', minimum: 0 },
            currency: { type: 'string', pattern: '^[A-Z]{3}$', examples: ['USD'] },
            perApproved: { type: ['number', 'null'], minimum: 0, description: '`total / approved`, to the micro-unit.' },
          },
        },
      },
    },
    StatsPercentiles: {
      type: 'object',
      description:
        'Median and 95th percentile in seconds, interpolated within fixed histogram buckets (the same as the Prometheus histograms), ' +
        'so their resolution is the bucket width. Time to deliver: provider acceptance → delivered receipt; time to verify: create → approval.',
      required: ['p50', 'p95'],
      properties: { p50: { type: ['number', 'null'], minimum: 0 }, p95: { type: ['number', 'null'], minimum: 0 } },
    },
    HealthStatus: { type: 'object', required: ['status'], properties: { status: { type: 'string', const: 'ok' } } },
    ReadyStatus: { type: 'object', required: ['status'], properties: { status: { type: 'string', const: 'ready' } } },
    LimitStatus: {
      type: 'object',
      description: 'One send limit that applies to the destination (and IP), as it stands now.',
      required: ['rule', 'limit', 'used', 'remaining', 'resetAt', 'retryAfterSeconds'],
      properties: {
        rule: { type: 'string', description: `The name a 429 \`rate_limited\` would give in \`rule\`: ${LIMIT_RULES_TEXT}.`, examples: ['destination_10m'] },
        limit: { type: ['integer', 'null'], minimum: 0, description: 'Sends (or distinct destinations) allowed in the window; `null` for `destination_cooldown`, which limits spacing, not count.' },
        used: { type: 'integer', minimum: 0, description: 'Sends (or distinct destinations) in the window now.' },
        remaining: { type: ['integer', 'null'], minimum: 0, description: '`limit − used`, never below 0; `null` when `limit` is.' },
        resetAt: {
          ...nullableDateTime,
          description: 'When refused: the moment one more send becomes allowed. Otherwise when the oldest send leaves the window. `null` when nothing is recorded.',
        },
        retryAfterSeconds: { type: 'integer', minimum: 0, description: '0 when one more send would be allowed now.' },
      },
    },
    LimitsStatus: {
      type: 'object',
      description:
        'What is left of every limit that applies to a send to `to` (from `ip`), so a client can say "try again in 40 s" instead of guessing. ' +
        'Asking never counts as a send.',
      required: ['to', 'limits', 'lockout', 'quarantined', 'budgets'],
      properties: {
        to: { type: 'string', description: 'The destination, normalised: E.164 number or lower-cased email address.' },
        limits: { type: 'array', items: schemaRef('LimitStatus') },
        lockout: {
          type: 'object',
          description: 'The wrong-code lockout of the destination (429 `destination_locked` while `locked`).',
          required: ['locked', 'retryAfterSeconds'],
          properties: {
            locked: { type: 'boolean' },
            retryAfterSeconds: { type: 'integer', minimum: 0, description: '0 when not locked.' },
          },
        },
        quarantined: { type: 'boolean', description: 'The number range is quarantined by the SMS-pumping guard (enforced, not shadow).' },
        budgets: {
          type: 'array',
          description: 'The tenant\'s daily message budget of each channel that can reach the destination (UTC days).',
          items: {
            type: 'object',
            required: ['channel', 'dailyMessages', 'used', 'resetAt'],
            properties: {
              channel: schemaRef('Channel'),
              dailyMessages: { type: ['integer', 'null'], minimum: 0, description: 'Messages per UTC day; `null` = unlimited.' },
              used: { type: 'integer', minimum: 0 },
              resetAt: { ...dateTime, description: 'The next UTC midnight.' },
            },
          },
        },
      },
    },
    Problem: {
      type: 'object',
      description:
        'An RFC 9457 problem document with Kurir\'s stable `code`. Extension members depend on the code: `rule` (with `retryAfterSeconds`) ' +
        'always comes with `rate_limited`, `destination_locked` and `budget_exhausted`; `rule` with `destination_not_allowed`; ' +
        '`retryAfterSeconds` with `resend_cooldown`.',
      required: ['type', 'title', 'status', 'detail', 'code'],
      properties: {
        type: { type: 'string', format: 'uri', description: '`urn:kurir:problem:<code>`.', examples: ['urn:kurir:problem:validation_failed'] },
        title: { type: 'string' },
        status: { type: 'integer', minimum: 400, maximum: 599 },
        detail: { type: 'string' },
        code: { type: 'string', enum: errorCodes },
        errors: {
          type: 'array',
          description: 'With `validation_failed`: the first (up to 20) schema issues.',
          maxItems: 20,
          items: {
            type: 'object',
            required: ['path', 'message'],
            properties: { path: { type: 'string', description: 'Dotted path of the field, or `(body)`.' }, message: { type: 'string' } },
          },
        },
        retryAfterSeconds: {
          type: 'integer',
          minimum: 1,
          description:
            'With `resend_cooldown`, `rate_limited`, `destination_locked`, `budget_exhausted` and (usually) `service_unavailable`: the same value as the `Retry-After` header.',
        },
        rule: {
          type: 'string',
          description:
            'The rule that refused the send. `destination_not_allowed`: ' +
            Object.entries(NOT_ALLOWED_RULES).map(([rule, text]) => `\`${rule}\` (${text})`).join(', ') +
            `. \`destination_locked\`: \`${LOCKOUT_RULE}\` (too many wrong codes for the destination). \`budget_exhausted\`: \`budget_<channel>\`. ` +
            `\`rate_limited\`: the send limit, one of ${LIMIT_RULES_TEXT}.`,
          examples: ['destination_10m', 'number_type'],
        },
        reason: {
          type: 'string',
          description: 'With `invalid_destination` (`invalid_email`, `not_e164`, `invalid_number`) and `invalid_signature` (`missing`, `malformed`, `stale`, `mismatch`).',
        },
        allowed: { type: 'array', items: { type: 'string' }, description: 'With `unknown_purpose`: the purposes configured for the tenant.' },
        verificationStatus: { ...schemaRef('VerificationStatus'), description: 'With `verification_not_pending`: the current status.' },
      },
      // What each code always carries. (`required` restates the members in `properties` so the
      // subschemas also stand on their own, e.g. for Ajv's strictRequired.)
      allOf: [
        whenCode(['rate_limited', 'destination_locked', 'budget_exhausted'], { rule: { type: 'string' }, retryAfterSeconds: { type: 'integer' } }),
        whenCode(['destination_not_allowed'], { rule: { enum: Object.keys(NOT_ALLOWED_RULES) } }),
        whenCode(['destination_locked'], { rule: { const: LOCKOUT_RULE } }),
        whenCode(['budget_exhausted'], { rule: { type: 'string', pattern: `^budget_(${CHANNELS.join('|')})$` } }),
        whenCode(['resend_cooldown'], { retryAfterSeconds: { type: 'integer' } }),
      ],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Callbacks: what Kurir posts to a verification's `callbackUrl` (OpenAPI 3.1 `webhooks`).
// ---------------------------------------------------------------------------------------------

/** Component name and summary of each callback event, in the order of CALLBACK_EVENT_TYPES. */
const CALLBACK_EVENTS: Record<CallbackEventType, { schema: string; summary: string }> = {
  'verification.delivered': {
    schema: 'CallbackEventDelivered',
    summary: 'The first delivered (or read) receipt of any delivery of the verification; once per verification.',
  },
  'verification.fallback': {
    schema: 'CallbackEventFallback',
    summary: 'A fallback started: delivery `data.delivery` goes out over `data.to` because the one over `data.from` failed, was rejected or timed out. The same code.',
  },
  'verification.approved': { schema: 'CallbackEventApproved', summary: 'The end user entered the right code.' },
  'verification.expired': { schema: 'CallbackEventExpired', summary: 'The verification reached its `expiresAt` while still pending.' },
  'verification.failed': {
    schema: 'CallbackEventFailed',
    summary: 'The last channel of the plan failed (`data.delivery`), and no delivery reached the user. A resend may still be tried.',
  },
};

const CALLBACK_DELIVERY_TEXT =
  `Kurir POSTs the event as JSON (\`Content-Type: application/json\`, \`User-Agent: ${CALLBACK_USER_AGENT}\`) to the verification's ` +
  '`callbackUrl`, through its own queue: 2xx = delivered; 410 = the endpoint is gone, no retry; 408, 429, 5xx, no answer within 5 s or ' +
  'no connection = retried 8 times in all with exponential backoff (from about 2 s, with jitter; about 4 minutes); any other answer, ' +
  'redirects included (they are never followed), is a permanent failure. Delivery is at least once and events may arrive out of order: ' +
  `deduplicate on \`id\` (also in \`${CALLBACK_EVENT_ID_HEADER}\`) and order by \`createdAt\`. Events never carry a code.`;

function callbackEventSchemas(): Record<string, SchemaObject> {
  const schemas: Record<string, SchemaObject> = {};
  for (const option of callbackEventSchema.options) {
    const type = option.shape.type.value;
    const { schema, summary } = CALLBACK_EVENTS[type];
    schemas[schema] = { ...fromZod(option), description: summary };
  }
  schemas['CallbackEvent'] = {
    description: `An event posted to a verification's \`callbackUrl\`. ${CALLBACK_DELIVERY_TEXT}`,
    oneOf: Object.values(CALLBACK_EVENTS).map(({ schema }) => schemaRef(schema)),
  };
  return schemas;
}

function webhooks(): Record<string, PathItemObject> {
  return Object.fromEntries(
    (Object.entries(CALLBACK_EVENTS) as [CallbackEventType, { schema: string; summary: string }][]).map(([type, { schema, summary }]) => [
      type,
      {
        post: {
          operationId: `callback${schema.slice('CallbackEvent'.length)}`,
          summary: `\`${type}\``,
          description: `${summary} ${CALLBACK_DELIVERY_TEXT}`,
          tags: ['callbacks'],
          security: [],
          parameters: [ref('parameters', 'KurirSignature'), ref('parameters', 'KurirEventId')],
          requestBody: { required: true, content: { 'application/json': { schema: schemaRef(schema) } } },
          responses: {
            '2XX': { description: 'Received: not sent again.' },
            '410': { description: 'The endpoint is gone: this event is not retried.' },
            default: { description: '408, 429 and 5xx are retried (see above); other answers are permanent failures.' },
          },
        },
      },
    ]),
  );
}

// ---------------------------------------------------------------------------------------------
// Parameters, headers and responses.
// ---------------------------------------------------------------------------------------------

function componentParameters(): Record<string, ParameterObject> {
  return {
    VerificationIdPath: {
      name: 'id',
      in: 'path',
      required: true,
      description: 'A verification id (`ver_…`). An id of another tenant is answered exactly like an unknown one.',
      schema: { type: 'string' },
      example: 'ver_3f9a1c0b7d2e4a6b8c0d1e2f',
    },
    IdempotencyKey: {
      name: 'Idempotency-Key',
      in: 'header',
      required: false,
      description:
        'Makes the create safe to retry. The same key with the same body returns the same verification (with `Idempotent-Replayed: true`) ' +
        'and sends nothing new; with a different body it is 422 `idempotency_key_reused`. Remembered as long as the verification record is kept.',
      schema: { type: 'string', pattern: IDEMPOTENCY_KEY.source },
    },
    RequestId: {
      name: 'X-Request-Id',
      in: 'header',
      required: false,
      description: 'Correlation id, echoed in the `X-Request-Id` response header; an absent or malformed one is replaced by a random UUID.',
      schema: { type: 'string', pattern: REQUEST_ID_PATTERN },
    },
    YCloudSignature: {
      name: 'YCloud-Signature',
      in: 'header',
      // Required for the request to be accepted; a missing header is answered 401 (`reason: missing`).
      required: true,
      description:
        '`t=<unix seconds>,s=<hex>` where `s` is HMAC-SHA256(webhook secret, `t.rawBody`) in hex; `t` must be within 300 s of the server clock.',
      schema: { type: 'string', examples: ['t=1700000000,s=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd'] },
    },
    KurirSignature: {
      name: CALLBACK_SIGNATURE_HEADER,
      in: 'header',
      required: true,
      description:
        'On every callback: `t=<unix seconds>,s=<hex>` where `s` is HMAC-SHA256 keyed with the tenant\'s API key over the bytes `<t>.<raw body>`, ' +
        'in lower-case hex. Verify over the raw body before parsing it, compare in constant time, and refuse a `t` more than ' +
        `${CALLBACK_TOLERANCE_SECONDS} s from your clock. \`t\` is the time of the attempt: every retry is signed afresh.`,
      schema: { type: 'string', pattern: '^t=\\d+,s=[0-9a-f]{64}$' },
    },
    KurirEventId: {
      name: CALLBACK_EVENT_ID_HEADER,
      in: 'header',
      required: true,
      description: 'The event\'s `id`; the same on every retry of the event.',
      schema: { type: 'string', pattern: '^evt_[0-9a-f]{24}$' },
    },
  };
}

function componentHeaders(): Record<string, HeaderObject> {
  return {
    XRequestId: { description: 'The request\'s correlation id (the caller\'s `X-Request-Id`, or a generated UUID).', required: true, schema: { type: 'string' } },
    CacheControl: { description: 'Always `no-store`.', required: true, schema: { type: 'string', const: 'no-store' } },
    RetryAfter: { description: 'Seconds to wait before retrying.', required: true, schema: { type: 'integer', minimum: 1 } },
    Location: { description: 'URL path of the verification.', required: true, schema: { type: 'string', examples: ['/v1/verifications/ver_3f9a1c0b7d2e4a6b8c0d1e2f'] } },
    IdempotentReplayed: {
      description: '`true` when the answer replays an earlier create with the same `Idempotency-Key`; absent otherwise.',
      required: false,
      schema: { type: 'string', const: 'true' },
    },
    WwwAuthenticate: { description: '`Bearer realm="kurir"`.', required: true, schema: { type: 'string' } },
  };
}

type HeaderMap = Record<string, HeaderObject | ReferenceObject>;

/** Headers every answer carries (set by the first middleware of api/app.ts). */
function commonHeaders(extra: HeaderMap = {}): HeaderMap {
  return { 'X-Request-Id': ref('headers', 'XRequestId'), 'Cache-Control': ref('headers', 'CacheControl'), ...extra };
}

function jsonResponse(description: string, schema: SchemaObject, headers: HeaderMap = {}): ResponseObject {
  return { description, headers: commonHeaders(headers), content: { 'application/json': { schema } } };
}

/**
 * A problem+json answer that can carry only `codes`, all of which must map to `status` in
 * ERROR_CODES (checked here, so a contract change that moves a code to another status fails
 * loudly at build/test time instead of documenting the wrong thing).
 */
function problemResponse(status: number, codes: readonly ErrorCode[], description: string, headers: HeaderMap = {}): ResponseObject {
  for (const code of codes) {
    if (ERROR_CODES[code] !== status) throw new Error(`openapi: error code ${code} is ${ERROR_CODES[code]}, not ${status}`);
  }
  return {
    description,
    headers: commonHeaders(headers),
    content: {
      'application/problem+json': {
        schema: { allOf: [schemaRef('Problem'), { type: 'object', properties: { status: { const: status }, code: { enum: [...codes] } } }] },
      },
    },
  };
}

const retryAfter = (required: boolean, description?: string): HeaderMap => ({
  'Retry-After': required && description === undefined
    ? ref('headers', 'RetryAfter')
    : { description: description ?? 'Seconds to wait before retrying.', required, schema: { type: 'integer', minimum: 1 } },
});

/** Problem answers shared by the bearer-protected /v1 endpoints (all but the webhook). */
function v1Problems(options: { body: boolean }): Record<string, ResponseObject> {
  const responses: Record<string, ResponseObject> = {
    '401': problemResponse(401, ['unauthorized'], 'Missing or invalid API key (checked before the body is read).', {
      'WWW-Authenticate': ref('headers', 'WwwAuthenticate'),
    }),
    '500': problemResponse(500, ['internal_error'], 'Unexpected error (no detail is disclosed).'),
    '503': problemResponse(503, ['service_unavailable'], 'The data store or queue is unreachable; nothing was changed. Retry after `Retry-After` seconds.', retryAfter(true)),
  };
  if (options.body) {
    responses['413'] = problemResponse(413, ['payload_too_large'], `Body larger than ${JSON_LIMIT_TEXT}.`);
    responses['415'] = problemResponse(415, ['unsupported_media_type'], 'A body was sent that is not `application/json`.');
  }
  return responses;
}

function sortResponses(responses: Record<string, ResponseObject>): Record<string, ResponseObject> {
  return Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)));
}

const COMMON_PARAMETERS: ReferenceObject[] = [ref('parameters', 'RequestId')];
const ID_PARAMETERS: ReferenceObject[] = [ref('parameters', 'VerificationIdPath'), ...COMMON_PARAMETERS];

function jsonBody(schemaName: string, required: boolean, description?: string, examples?: Record<string, ExampleObject>): RequestBodyObject {
  const media: MediaTypeObject = { schema: schemaRef(schemaName) };
  if (examples !== undefined) media.examples = examples;
  return { ...(description === undefined ? {} : { description }), required, content: { 'application/json': media } };
}

/** 403 of a send (create, resend): the send gate refused the destination. */
function destinationNotAllowed(): ResponseObject {
  return problemResponse(
    403,
    ['destination_not_allowed'],
    'The destination may not receive codes; `rule` says why: ' +
      Object.entries(NOT_ALLOWED_RULES).map(([rule, text]) => `\`${rule}\` (${text})`).join(', ') +
      '. Nothing is sent. A tenant with `security.refusals: silent` gets a 202 with a decoy verification instead (it never sends and never approves).',
  );
}

const SEND_REFUSALS_429_TEXT =
  '`rate_limited`: a send limit is reached (`rule` names it: ' + LIMIT_RULES_TEXT + '). ' +
  '`destination_locked`: too many wrong codes for this destination (`rule: ' + LOCKOUT_RULE + '`). ' +
  '`budget_exhausted`: the tenant\'s daily message budget for the channel is used up (`rule: budget_<channel>`). ' +
  'Nothing is sent or counted; retry after `Retry-After` seconds (also in `retryAfterSeconds`). `GET /v1/limits` shows what is left.';

// ---------------------------------------------------------------------------------------------
// Paths.
// ---------------------------------------------------------------------------------------------

function paths(): Record<string, PathItemObject> {
  const verificationHeaders: HeaderMap = { Location: ref('headers', 'Location') };
  return {
    '/v1/verifications': {
      post: {
        operationId: 'createVerification',
        summary: 'Create a verification and send its code',
        description:
          'Validates, normalises `to`, picks the plan and locale from the policy, generates the code and queues the first delivery. ' +
          'Fallback to the next channel of the plan (same code) happens on failure or when no delivery receipt arrives in time.',
        tags: ['verifications'],
        security: BEARER_SECURITY,
        parameters: [ref('parameters', 'IdempotencyKey'), ...COMMON_PARAMETERS],
        requestBody: jsonBody('CreateVerificationRequest', true, undefined, {
          phone: { summary: 'Phone number, policy routing', value: { to: '+6281234567890', purpose: 'login' } },
          email: { summary: 'Email with options', value: { to: 'ana@example.com', purpose: 'signup', locale: 'pt-BR', ttlSeconds: 300, codeLength: 6, context: { ip: '203.0.113.7', userId: 'u_42' } } },
        }),
        responses: sortResponses({
          '202': {
            description:
              'Accepted: the first delivery is queued. A replay of an earlier create with the same `Idempotency-Key` and body answers ' +
              '`Idempotent-Replayed: true` with the same verification in its current status and sends nothing new.',
            headers: commonHeaders({ ...verificationHeaders, 'Idempotent-Replayed': ref('headers', 'IdempotentReplayed') }),
            content: { 'application/json': { schema: schemaRef('CreatedVerification') } },
          },
          '400': problemResponse(
            400,
            ['validation_failed', 'invalid_json', 'invalid_destination', 'unknown_purpose', 'channel_not_allowed', 'invalid_idempotency_key'],
            'The body does not match the schema (unknown fields included), is not JSON, `to` is not a phone number or email address, the purpose ' +
              'is not configured, the channel cannot reach the destination, or the `Idempotency-Key` header is malformed.',
          ),
          '403': destinationNotAllowed(),
          '422': problemResponse(422, ['idempotency_key_reused'], 'This `Idempotency-Key` was used with a different body.'),
          '429': problemResponse(429, ['rate_limited', 'destination_locked', 'budget_exhausted'], SEND_REFUSALS_429_TEXT, retryAfter(true)),
          ...v1Problems({ body: true }),
        }),
      },
    },
    '/v1/verifications/{id}': {
      get: {
        operationId: 'getVerification',
        summary: 'Status of a verification with its delivery timeline',
        tags: ['verifications'],
        security: BEARER_SECURITY,
        parameters: ID_PARAMETERS,
        responses: sortResponses({
          '200': jsonResponse('The verification.', schemaRef('Verification')),
          '404': problemResponse(404, ['not_found'], 'No such verification for this tenant.'),
          ...v1Problems({ body: false }),
        }),
      },
    },
    '/v1/verifications/{id}/check': {
      post: {
        operationId: 'checkVerification',
        summary: 'Check a code',
        description: 'Attempts are counted atomically; a code approves once. This endpoint never answers 404: unknown ids are reported as `expired`.',
        tags: ['verifications'],
        security: BEARER_SECURITY,
        parameters: ID_PARAMETERS,
        requestBody: jsonBody('CheckRequest', true, undefined, { code: { value: { code: '123456' } } }),
        responses: sortResponses({
          '200': jsonResponse('The outcome (also for a wrong code: see `valid` and `status`).', schemaRef('CheckResult')),
          '400': problemResponse(400, ['validation_failed', 'invalid_json'], 'The body is missing, not JSON, or does not match the schema.'),
          '429': problemResponse(
            429,
            ['destination_locked'],
            `Too many wrong codes for this verification's destination, across its verifications (\`rule: ${LOCKOUT_RULE}\`): the code is not ` +
              'checked and no attempt is counted. Retry after `Retry-After` seconds (also in `retryAfterSeconds`).',
            retryAfter(true),
          ),
          ...v1Problems({ body: true }),
        }),
      },
    },
    '/v1/verifications/{id}/resend': {
      post: {
        operationId: 'resendVerification',
        summary: 'Send the code again, optionally over another channel',
        tags: ['verifications'],
        security: BEARER_SECURITY,
        parameters: ID_PARAMETERS,
        requestBody: jsonBody('ResendRequest', false, 'Optional; an absent body is the same as `{}`.', { sms: { value: { channel: 'sms' } } }),
        responses: sortResponses({
          '202': jsonResponse('A new delivery is queued.', schemaRef('ResendResult')),
          '400': problemResponse(400, ['validation_failed', 'invalid_json', 'channel_not_allowed'], 'Bad body, or the channel cannot reach this destination.'),
          '403': destinationNotAllowed(),
          '404': problemResponse(404, ['not_found'], 'No such verification for this tenant.'),
          '409': problemResponse(409, ['verification_not_pending'], 'The verification is no longer pending (`verificationStatus` says what it is).'),
          '429': problemResponse(
            429,
            ['resend_cooldown', 'max_sends_reached', 'rate_limited', 'destination_locked', 'budget_exhausted'],
            '`resend_cooldown`: asked too soon for this verification, retry after `Retry-After` seconds. `max_sends_reached`: no more sends for ' +
              'this verification (no `Retry-After`; create a new verification). ' + SEND_REFUSALS_429_TEXT,
            retryAfter(false, 'With every code except `max_sends_reached`: seconds until a resend may be allowed.'),
          ),
          ...v1Problems({ body: true }),
        }),
      },
    },
    '/v1/verifications/{id}/cancel': {
      post: {
        operationId: 'cancelVerification',
        summary: 'Cancel a pending verification',
        description: 'No body is needed (a JSON body, if sent, is ignored).',
        tags: ['verifications'],
        security: BEARER_SECURITY,
        parameters: ID_PARAMETERS,
        responses: sortResponses({
          '200': jsonResponse('Canceled.', schemaRef('CancelResult')),
          '400': problemResponse(400, ['invalid_json'], 'A body was sent that is not valid JSON.'),
          '404': problemResponse(404, ['not_found'], 'No such verification for this tenant.'),
          '409': problemResponse(409, ['verification_not_pending'], 'The verification is no longer pending (`verificationStatus` says what it is).'),
          ...v1Problems({ body: true }),
        }),
      },
    },
    '/v1/limits': {
      get: {
        operationId: 'getLimits',
        summary: 'What is left of the send limits for a destination',
        description:
          'Every send limit that applies to a send to `to` (and from `ip`, as `context.ip` of a create), the destination\'s lockout, the ' +
          'pumping quarantine and the daily budgets, with when each resets. Read-only: asking never counts as a send.',
        tags: ['limits'],
        security: BEARER_SECURITY,
        parameters: [
          {
            name: 'to',
            in: 'query',
            required: true,
            description: 'The destination, as a create\'s `to`: an E.164 phone number or an email address.',
            schema: { type: 'string', minLength: 3, maxLength: 320 },
            example: '+6281234567890',
          },
          {
            name: 'ip',
            in: 'query',
            required: false,
            description: 'The end user\'s IP address (as a create\'s `context.ip`); adds the `ip_destinations` limit.',
            schema: { anyOf: [{ type: 'string', format: 'ipv4' }, { type: 'string', format: 'ipv6' }] },
            example: '203.0.113.7',
          },
          ...COMMON_PARAMETERS,
        ],
        responses: sortResponses({
          '200': jsonResponse('The limits as they stand now.', schemaRef('LimitsStatus')),
          '400': problemResponse(
            400,
            ['validation_failed', 'invalid_destination'],
            '`to` is missing, `ip` is not an IP address, an unknown query parameter was sent (`validation_failed`), or `to` is not a phone ' +
              'number or email address (`invalid_destination`).',
          ),
          ...v1Problems({ body: false }),
        }),
      },
    },
    '/v1/stats': {
      get: {
        operationId: 'getStats',
        summary: 'Delivery, fallback and conversion rates, latency percentiles and cost',
        description:
          'The calling tenant\'s numbers over `[from, to)` (default: the last hour; at most 7 days), widened to whole minutes, optionally ' +
          'for one destination country and one channel. Computed from counters Kurir keeps in Redis, not from Prometheus.',
        tags: ['stats'],
        security: BEARER_SECURITY,
        parameters: [
          { name: 'from', in: 'query', required: false, description: 'ISO 8601 timestamp with offset; default `to` − 1 hour.', schema: dateTime, example: '2025-01-01T10:00:00Z' },
          { name: 'to', in: 'query', required: false, description: 'ISO 8601 timestamp with offset; default now.', schema: dateTime, example: '2025-01-01T11:00:00Z' },
          {
            name: 'country',
            in: 'query',
            required: false,
            description: 'ISO 3166-1 alpha-2 of the destination (`ZZ`: email addresses and unknown).',
            schema: { type: 'string', pattern: '^[A-Za-z]{2}$' },
            example: 'ID',
          },
          { name: 'channel', in: 'query', required: false, schema: schemaRef('Channel') },
          ...COMMON_PARAMETERS,
        ],
        responses: sortResponses({
          '200': jsonResponse('The numbers of the window.', schemaRef('StatsSummary')),
          '400': problemResponse(
            400,
            ['validation_failed'],
            'A timestamp is not ISO 8601, `from` is not before `to`, the window is longer than 7 days, `country` or `channel` is not one, ' +
              'or an unknown query parameter was sent.',
          ),
          ...v1Problems({ body: false }),
        }),
      },
    },
    '/v1/webhooks/ycloud': {
      post: {
        operationId: 'receiveYCloudWebhook',
        summary: 'YCloud delivery receipts',
        description:
          'Authenticated by the `YCloud-Signature` header over the raw body (no bearer key). A receipt is applied before the answer ' +
          '(idempotently: a repeat changes nothing) and answered 2xx only once applied, so YCloud retries anything else.',
        tags: ['webhooks'],
        security: [],
        parameters: [ref('parameters', 'YCloudSignature'), ...COMMON_PARAMETERS],
        requestBody: jsonBody('YCloudEvent', true),
        responses: sortResponses({
          '200': jsonResponse('Applied (or a duplicate, or an event Kurir ignores).', schemaRef('WebhookAck')),
          '400': problemResponse(400, ['invalid_json', 'validation_failed'], 'Signed, but not JSON or not a YCloud event.'),
          '401': problemResponse(401, ['invalid_signature'], 'Missing, malformed, stale or wrong signature (`reason`).'),
          '413': problemResponse(413, ['payload_too_large'], `Body larger than ${WEBHOOK_LIMIT_TEXT}.`),
          '415': problemResponse(415, ['unsupported_media_type'], 'The body is not `application/json`.'),
          '500': problemResponse(500, ['internal_error'], 'Unexpected error.'),
          '503': problemResponse(503, ['service_unavailable'], 'The event could not be applied (Redis down); YCloud retries.', retryAfter(true)),
        }),
      },
    },
    '/healthz': {
      get: {
        operationId: 'healthz',
        summary: 'Liveness',
        tags: ['operations'],
        security: [],
        parameters: COMMON_PARAMETERS,
        responses: { '200': jsonResponse('The process is up.', schemaRef('HealthStatus')) },
      },
    },
    '/readyz': {
      get: {
        operationId: 'readyz',
        summary: 'Readiness (Redis reachable)',
        tags: ['operations'],
        security: [],
        parameters: COMMON_PARAMETERS,
        responses: {
          '200': jsonResponse('Ready to serve.', schemaRef('ReadyStatus')),
          '503': problemResponse(503, ['service_unavailable'], 'Redis did not answer a PING within 1 s.', retryAfter(true)),
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary: 'Prometheus metrics',
        description: 'Open to the scraper without tenant credentials: protect it at the network edge.',
        tags: ['operations'],
        security: [],
        parameters: COMMON_PARAMETERS,
        responses: {
          '200': {
            description: 'Prometheus text exposition format (`text/plain; version=0.0.4; charset=utf-8`).',
            headers: commonHeaders(),
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This OpenAPI document',
        tags: ['operations'],
        security: [],
        parameters: COMMON_PARAMETERS,
        responses: {
          '200': jsonResponse('The OpenAPI 3.1 document.', {
            type: 'object',
            required: ['openapi', 'info', 'paths'],
            properties: { openapi: { type: 'string', pattern: '^3\\.1\\.\\d+$' }, info: { type: 'object' }, paths: { type: 'object' } },
          }),
        },
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The document.
// ---------------------------------------------------------------------------------------------

export function buildOpenApiDocument(options: { serverUrl?: string } = {}): OpenApiDocument {
  const document: OpenApiDocument = {
    openapi: '3.1.0',
    info: {
      title: 'Kurir',
      version: API_DOCUMENT_VERSION,
      summary: 'Self-hosted OTP delivery and verification: WhatsApp first, SMS fallback, email.',
      description:
        'All bodies are JSON. Clients send `Authorization: Bearer <api key>`; errors are RFC 9457 `application/problem+json` documents ' +
        'with a stable `code`. Unknown request fields are refused. Unknown paths answer 404 `not_found`.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'verifications', description: 'Create, inspect, check, resend and cancel verifications.' },
      { name: 'limits', description: 'The send limits, lockout and budgets that apply to a destination.' },
      { name: 'stats', description: 'Delivery funnel, latency and cost of the calling tenant.' },
      { name: 'webhooks', description: 'Provider receipts.' },
      { name: 'operations', description: 'Health, readiness, metrics and this document.' },
      { name: 'callbacks', description: 'Signed events Kurir posts to a verification\'s `callbackUrl`.' },
    ],
    paths: paths(),
    webhooks: webhooks(),
    components: {
      schemas: componentSchemas(),
      parameters: componentParameters(),
      headers: componentHeaders(),
      securitySchemes: {
        [BEARER]: { type: 'http', scheme: 'bearer', description: 'A tenant API key (`KURIR_API_KEYS`), sent as `Authorization: Bearer <api key>`.' },
      },
    },
  };
  if (options.serverUrl !== undefined) document.servers = [{ url: options.serverUrl }];
  return document;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

let cachedDocument: OpenApiDocument | undefined;
let cachedJson: string | undefined;

/** The document of this process (no `servers`: relative to wherever it is served), built once and frozen. */
export function openApiDocument(): OpenApiDocument {
  cachedDocument ??= deepFreeze(buildOpenApiDocument({}));
  return cachedDocument;
}

/** `JSON.stringify(openApiDocument())`, computed once: a route can send it without per-request work. */
export function openApiDocumentJson(): string {
  cachedJson ??= JSON.stringify(openApiDocument());
  return cachedJson;
}
