import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

import { ERROR_CODES, KurirError, type ErrorCode } from '../../common/errors.js';
import {
  API_DOCUMENT_VERSION,
  REQUEST_ID_PATTERN,
  buildOpenApiDocument,
  openApiDocument,
  openApiDocumentJson,
  type OpenApiDocument,
  type OperationObject,
  type ResponseObject,
} from '../../api/openapi.js';
import { problemFor } from '../../api/problem.js';
import { checkSchema, createVerificationSchema, resendSchema } from '../../api/schemas.js';

/**
 * The document on its own: valid OpenAPI 3.1, strict-compilable schemas, in step with the routes
 * of api/app.ts, the zod request schemas and ERROR_CODES. Whether the real answers match it is
 * checked end to end, over HTTP, by test/e2e/openapi-contract.test.ts.
 */

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const doc: OpenApiDocument = openApiDocument();
/** The document exactly as a client receives it from `GET /openapi.json`. */
const wire = JSON.parse(openApiDocumentJson()) as JsonObject;

// ---------------------------------------------------------------------------------------------
// Ajv 2020-12 over the document's schemas. `#/components/schemas/X` refs are rewritten to
// absolute ids so every schema compiles standalone, in strict mode (unknown keywords fail).
// ---------------------------------------------------------------------------------------------

const SCHEMA_BASE = 'https://kurir.test/openapi/components/schemas/';
const LOCAL_PREFIX = '#/components/schemas/';

function rewriteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(rewriteRefs);
  if (!isObject(value)) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [
      key,
      key === '$ref' && typeof inner === 'string' && inner.startsWith(LOCAL_PREFIX) ? SCHEMA_BASE + inner.slice(LOCAL_PREFIX.length) : rewriteRefs(inner),
    ]),
  );
}

function newAjv(): Ajv2020 {
  const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
  addFormats.default(ajv);
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    ajv.addSchema({ ...(rewriteRefs(schema) as JsonObject), $id: SCHEMA_BASE + name });
  }
  return ajv;
}

const ajv = newAjv();
const compiled = new Map<string, ValidateFunction>();

function componentValidator(name: string): ValidateFunction {
  const validate = ajv.getSchema(SCHEMA_BASE + name);
  assert.ok(validate !== undefined, `components.schemas.${name} is missing`);
  return validate;
}

function validatorFor(schema: unknown): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = compiled.get(key);
  if (validate === undefined) {
    validate = ajv.compile(rewriteRefs(schema) as JsonObject);
    compiled.set(key, validate);
  }
  return validate;
}

function assertValid(validate: ValidateFunction, value: unknown, label: string): void {
  const ok = validate(value);
  assert.ok(ok, `${label}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(value)}`);
}

/** Every `schema` of a parameter, header, request body or response, with where it sits. */
function inlineSchemas(): { where: string; schema: JsonObject }[] {
  const found: { where: string; schema: JsonObject }[] = [];
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) node.forEach((item, index) => walk(item, `${where}[${index}]`));
    if (!isObject(node)) return;
    for (const [key, inner] of Object.entries(node)) {
      if (key === 'schema' && isObject(inner)) found.push({ where: `${where}.schema`, schema: inner });
      else walk(inner, `${where}.${key}`);
    }
  };
  walk(wire['paths'], 'paths');
  const components = wire['components'] as JsonObject;
  walk(components['parameters'], 'components.parameters');
  walk(components['headers'], 'components.headers');
  return found;
}

// ---------------------------------------------------------------------------------------------
// Helpers over operations.
// ---------------------------------------------------------------------------------------------

type Method = 'get' | 'post';

function operation(path: string, method: Method): OperationObject {
  const item = doc.paths[path];
  assert.ok(item !== undefined, `path ${path} is not documented`);
  const op = item[method];
  assert.ok(op !== undefined, `${method.toUpperCase()} ${path} is not documented`);
  return op;
}

function operations(): { path: string; method: Method; op: OperationObject }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    (['get', 'post'] as const).flatMap((method) => {
      const op = item[method];
      return op === undefined ? [] : [{ path, method, op }];
    }),
  );
}

function response(op: OperationObject, status: number): ResponseObject {
  const found = op.responses[String(status)];
  assert.ok(found !== undefined, `${op.operationId} does not document ${status}`);
  assert.ok(!('$ref' in found), `${op.operationId} ${status} is a reference`);
  return found;
}

function responseSchema(op: OperationObject, status: number): { mediaType: string; validate: ValidateFunction } {
  const content = response(op, status).content ?? {};
  const [mediaType, media] = Object.entries(content)[0] ?? [];
  assert.ok(mediaType !== undefined && media?.schema !== undefined, `${op.operationId} ${status} has no schema`);
  return { mediaType, validate: validatorFor(media.schema) };
}

function requestBodyValidator(op: OperationObject): ValidateFunction {
  const schema = op.requestBody?.content['application/json']?.schema;
  assert.ok(schema !== undefined, `${op.operationId} has no JSON request body`);
  return validatorFor(schema);
}

/** The problem codes a problem+json response allows (from its `allOf` narrowing). */
function problemCodes(res: ResponseObject): string[] | undefined {
  const schema = res.content?.['application/problem+json']?.schema;
  if (schema === undefined) return undefined;
  const allOf = schema['allOf'];
  assert.ok(Array.isArray(allOf), 'problem response schema is not an allOf');
  const narrowing = allOf[1] as { properties: { code: { enum: string[] } } };
  return narrowing.properties.code.enum;
}

/** The extension members a code always carries (as api/refusals.ts and the handlers set them). */
const PROBLEM_DETAILS: Partial<Record<ErrorCode, Record<string, unknown>>> = {
  rate_limited: { rule: 'destination_10m', retryAfterSeconds: 600 },
  destination_locked: { rule: 'destination_lockout', retryAfterSeconds: 3600 },
  budget_exhausted: { rule: 'budget_sms', retryAfterSeconds: 3600 },
  destination_not_allowed: { rule: 'number_type' },
  resend_cooldown: { retryAfterSeconds: 12 },
  service_unavailable: { retryAfterSeconds: 1 },
};

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

describe('OpenAPI document', () => {
  test('is a valid OpenAPI 3.1 document (official schema, @seriousme/openapi-schema-validator)', async () => {
    for (const candidate of [wire, JSON.parse(JSON.stringify(buildOpenApiDocument({ serverUrl: 'https://otp.example.com' }))) as JsonObject]) {
      const validator = new Validator({ strict: false, allErrors: true });
      const result = await validator.validate(candidate);
      assert.equal(validator.version, '3.1');
      assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
    }
    assert.equal(doc.openapi, '3.1.0');
  });

  test('is built once, frozen, and serialises without loss', () => {
    assert.equal(openApiDocument(), doc);
    assert.ok(Object.isFrozen(doc) && Object.isFrozen(doc.paths) && Object.isFrozen(doc.components.schemas));
    assert.equal(openApiDocumentJson(), openApiDocumentJson());
    assert.deepEqual(wire, doc, 'undefined or non-JSON values would be lost on the wire');
    assert.equal(doc.servers, undefined);
    assert.deepEqual(buildOpenApiDocument({ serverUrl: 'https://otp.example.com' }).servers, [{ url: 'https://otp.example.com' }]);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(API_DOCUMENT_VERSION, pkg.version);
  });

  test('every schema compiles with Ajv 2020-12 in strict mode and every $ref resolves', () => {
    for (const name of Object.keys(doc.components.schemas)) componentValidator(name);
    const inline = inlineSchemas();
    assert.ok(inline.length > 30, `only ${inline.length} inline schemas found`);
    for (const { where, schema } of inline) {
      assert.doesNotThrow(() => validatorFor(schema), where);
    }
    const refs: string[] = [];
    const collect = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(collect);
      else if (isObject(node)) {
        for (const [key, inner] of Object.entries(node)) {
          if (key === '$ref' && typeof inner === 'string') refs.push(inner);
          else collect(inner);
        }
      }
    };
    collect(wire);
    assert.ok(refs.length > 0);
    for (const target of refs) {
      assert.match(target, /^#\/components\/(schemas|parameters|headers)\/[A-Za-z]+$/);
      const [, , kind, name] = target.split('/');
      const bucket = (wire['components'] as Record<string, JsonObject>)[kind ?? ''];
      assert.ok(bucket !== undefined && name !== undefined && bucket[name] !== undefined, `dangling $ref ${target}`);
    }
  });

  test('documents every route registered in api/app.ts, and nothing else', () => {
    const source = readFileSync(new URL('../../api/app.ts', import.meta.url), 'utf8');
    const routes = [...source.matchAll(/\b(app|v1)\.(get|post|put|patch|delete)\(\s*'([^']+)'/g)].map((match) => {
      const [, owner, method, path] = match;
      const full = `${owner === 'v1' ? '/v1' : ''}${path ?? ''}`.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      return { method: method as Method, path: full };
    });
    assert.ok(routes.length >= 9, `found only ${routes.length} routes in app.ts`);
    for (const { method, path } of routes) operation(path, method);
    const registered = new Set(routes.map(({ method, path }) => `${method} ${path}`));
    for (const { method, path } of operations()) assert.ok(registered.has(`${method} ${path}`), `${method.toUpperCase()} ${path} is documented but not routed`);
    const required = [
      'post /v1/verifications', 'get /v1/verifications/{id}', 'post /v1/verifications/{id}/check', 'post /v1/verifications/{id}/resend',
      'post /v1/verifications/{id}/cancel', 'get /v1/limits', 'post /v1/webhooks/ycloud', 'get /healthz', 'get /readyz', 'get /metrics',
      'get /openapi.json',
    ];
    const documented = new Set(operations().map(({ method, path }) => `${method} ${path}`));
    for (const route of required) assert.ok(documented.has(route), route);
  });

  test('constants mirrored from api/app.ts still match it', () => {
    const source = readFileSync(new URL('../../api/app.ts', import.meta.url), 'utf8');
    const requestId = /const REQUEST_ID = \/(.+)\/;/.exec(source)?.[1];
    assert.equal(`${requestId}`, REQUEST_ID_PATTERN);
    assert.match(source, /const JSON_LIMIT = '16kb'/);
    assert.match(source, /const WEBHOOK_LIMIT = '256kb'/);
    assert.match(source, /'Bearer realm="kurir"'/);
  });

  test('bearer auth on /v1/* but the webhook, none on the webhook and operations endpoints', () => {
    assert.deepEqual(doc.components.securitySchemes['bearerAuth'], {
      type: 'http', scheme: 'bearer', description: doc.components.securitySchemes['bearerAuth']?.description,
    });
    const ids = new Set<string>();
    for (const { path, op } of operations()) {
      assert.ok(!ids.has(op.operationId), `duplicate operationId ${op.operationId}`);
      ids.add(op.operationId);
      if (path.startsWith('/v1/') && path !== '/v1/webhooks/ycloud') {
        assert.deepEqual(op.security, [{ bearerAuth: [] }], path);
        assert.ok(op.responses['401'] !== undefined && op.responses['503'] !== undefined, path);
      } else {
        assert.deepEqual(op.security, [], path);
      }
    }
    const webhook = operation('/v1/webhooks/ycloud', 'post');
    const signature = webhook.parameters?.find((p) => '$ref' in p && p.$ref === '#/components/parameters/YCloudSignature');
    assert.ok(signature !== undefined);
    assert.equal(doc.components.parameters['YCloudSignature']?.name, 'YCloud-Signature');
    const metrics = response(operation('/metrics', 'get'), 200);
    assert.deepEqual(Object.keys(metrics.content ?? {}), ['text/plain']);
  });

  test('request bodies are the zod schemas: they accept and refuse the same bodies', () => {
    const cases: { path: string; schema: { safeParse(value: unknown): { success: boolean } }; bodies: unknown[] }[] = [
      {
        path: '/v1/verifications',
        schema: createVerificationSchema,
        bodies: [
          { to: '+6281234567890', purpose: 'login' },
          { to: 'ana@example.com', purpose: 'signup', channel: 'email', locale: 'pt-BR', ttlSeconds: 300, codeLength: 8, context: { ip: '203.0.113.7', userId: 'u_1', deviceId: 'd 1' } },
          { to: '+6281234567890', purpose: 'login', context: { ip: '2001:db8::1' } },
          { to: '+6281234567890', purpose: 'login', chanel: 'sms' },
          { to: '+6281234567890', purpose: 'login', context: { ip: '203.0.113.7', extra: 1 } },
          { to: '+6281234567890', purpose: 'login', context: { ip: '999.0.0.1' } },
          { to: '+6281234567890', purpose: 'Login' },
          { to: '+6281234567890', purpose: 'login', channel: 'telegram' },
          { to: '+6281234567890', purpose: 'login', ttlSeconds: 59 },
          { to: '+6281234567890', purpose: 'login', ttlSeconds: 60.5 },
          { to: '+6281234567890', purpose: 'login', codeLength: 11 },
          { to: '+6281234567890', purpose: 'login', locale: 'x' },
          { to: '+6281234567890' },
          { purpose: 'login' },
          [],
          null,
        ],
      },
      {
        path: '/v1/verifications/{id}/check',
        schema: checkSchema,
        bodies: [{ code: '123456' }, { code: '1234567890' }, { code: '123' }, { code: 123456 }, { code: '123456', extra: true }, {}],
      },
      {
        path: '/v1/verifications/{id}/resend',
        schema: resendSchema,
        bodies: [{}, { channel: 'sms' }, { channel: 'auto' }, { channel: 'sms', to: '+1' }],
      },
    ];
    for (const { path, schema, bodies } of cases) {
      const validate = requestBodyValidator(operation(path, 'post'));
      for (const body of bodies) {
        assert.equal(validate(body), schema.safeParse(body).success, `${path}: zod and the document disagree on ${JSON.stringify(body)}`);
      }
    }
    // The two the brief singles out, stated plainly.
    const create = requestBodyValidator(operation('/v1/verifications', 'post'));
    assert.equal(create({ to: '+6281234567890', purpose: 'login', channel: 'sms' }), true);
    // callbackUrl is part of the contract now (tenant callbacks); its finer rules are zod refinements (test/unit/callbacks.test.ts).
    assert.equal(create({ to: '+6281234567890', purpose: 'login', callbackUrl: 'https://example.com/hook' }), true);
    assert.equal(createVerificationSchema.safeParse({ to: '+6281234567890', purpose: 'login', callbackUrl: 'https://example.com/hook' }).success, true);
    assert.equal(operation('/v1/verifications', 'post').requestBody?.required, true);
    assert.equal(operation('/v1/verifications/{id}/resend', 'post').requestBody?.required, false);
  });

  test('the Problem code enum is exactly ERROR_CODES, and each problem response lists codes of its status', () => {
    const problem = doc.components.schemas['Problem'] as { properties: { code: { enum: string[] } } };
    assert.deepEqual([...problem.properties.code.enum].sort(), Object.keys(ERROR_CODES).sort());
    const documented = new Set<string>();
    for (const { op } of operations()) {
      for (const [status, res] of Object.entries(op.responses)) {
        assert.ok(!('$ref' in res));
        const codes = problemCodes(res);
        if (Number(status) >= 400) assert.ok(codes !== undefined, `${op.operationId} ${status} is not problem+json`);
        for (const code of codes ?? []) {
          assert.equal(ERROR_CODES[code as ErrorCode], Number(status), `${op.operationId} ${status} lists ${code}`);
          documented.add(code);
        }
      }
    }
    assert.deepEqual([...documented].sort(), Object.keys(ERROR_CODES).sort(), 'every error code is answered by some documented endpoint');
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      const details = PROBLEM_DETAILS[code] ?? {};
      assertValid(componentValidator('Problem'), JSON.parse(JSON.stringify(problemFor(new KurirError(code, 'x', details)))), code);
    }
  });

  test('Problem requires the members a code always carries (rule, retryAfterSeconds)', () => {
    const problem = componentValidator('Problem');
    const render = (code: ErrorCode, details: Record<string, unknown>) => JSON.parse(JSON.stringify(problemFor(new KurirError(code, 'x', details)))) as unknown;
    for (const code of ['rate_limited', 'destination_locked', 'budget_exhausted'] as const) {
      const full = PROBLEM_DETAILS[code] ?? {};
      assert.equal(problem(render(code, { ...full, rule: undefined })), false, `${code} without rule`);
      assert.equal(problem(render(code, { ...full, retryAfterSeconds: undefined })), false, `${code} without retryAfterSeconds`);
    }
    assert.equal(problem(render('destination_not_allowed', {})), false, 'destination_not_allowed without rule');
    assert.equal(problem(render('destination_not_allowed', { rule: 'destination_10m' })), false, 'destination_not_allowed with a limit rule');
    for (const rule of ['number_type', 'geo', 'pumping_guard']) assertValid(problem, render('destination_not_allowed', { rule }), rule);
    assert.equal(problem(render('destination_locked', { rule: 'destination_10m', retryAfterSeconds: 5 })), false, 'destination_locked names its rule');
    assert.equal(problem(render('budget_exhausted', { rule: 'budget_fax', retryAfterSeconds: 5 })), false, 'budget_<channel>');
    assert.equal(problem(render('resend_cooldown', {})), false, 'resend_cooldown without retryAfterSeconds');
    assert.equal(problem(render('rate_limited', { rule: 'destination_10m', retryAfterSeconds: 0 })), false, 'Retry-After is at least 1 s');
  });

  test('429 and 503 answers document Retry-After', () => {
    for (const { op } of operations()) {
      for (const status of ['429', '503']) {
        const res = op.responses[status];
        if (res !== undefined && !('$ref' in res)) assert.ok(res.headers?.['Retry-After'] !== undefined, `${op.operationId} ${status}`);
      }
    }
    assert.ok(operation('/v1/verifications/{id}/resend', 'post').responses['429'] !== undefined);
  });

  test('answers written as literals match their schemas (the rest is checked over HTTP by the e2e contract test)', () => {
    // The literal problem api/app.ts writes when Redis does not answer (the e2e suite cannot take Redis down).
    const notReady = { type: 'urn:kurir:problem:service_unavailable', title: 'Not ready', status: 503, code: 'service_unavailable', detail: 'Redis is not reachable.' };
    assertValid(responseSchema(operation('/readyz', 'get'), 503).validate, notReady, 'readyz 503');
    assertValid(responseSchema(operation('/openapi.json', 'get'), 200).validate, wire, 'openapi.json');
  });
});
