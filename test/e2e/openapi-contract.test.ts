import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

import { openApiDocument, type HeaderObject, type OpenApiDocument, type OperationObject, type ReferenceObject, type ResponseObject } from '../../api/openapi.js';
import { signatureHeader } from '../../common/providers/ycloud/ycloud-signature.js';
import { TENANTS, magicNumber, startKurir, type HttpReply, type KurirHarness } from '../helpers/kurir.js';

/**
 * The OpenAPI document against the real API: every role and the provider simulator on real
 * Redis, driven over HTTP. Each answer (status, media type, required headers, body) must be one
 * the served `/openapi.json` documents for that operation, its problem `code` must be listed for
 * that operation and status, and its body may not carry members the document does not declare.
 * The last test checks that every documented answer was reached, except 500 and 503 (they need
 * a broken Redis or a bug; test/unit/openapi.test.ts checks the literal 503 of /readyz).
 *
 * The policy (test/fixtures/contract.policy.yaml) makes limits trip at once: `acme` gets one code
 * per destination per 10 minutes, a lockout after one wrong code and no SMS to Indonesia; `beta`
 * gets no SMS budget and two attempts per code; `delta` loose limits and a lockout after one wrong
 * code; `gamma` gets the built-in defaults.
 */

type Method = 'get' | 'post';
type JsonObject = Record<string, unknown>;
type Tenant = keyof typeof TENANTS | 'gamma' | 'delta';

const EXTRA_KEYS = { gamma: 'gamma_test_key_0000000003', delta: 'delta_test_key_0000000004' } as const;

let k: KurirHarness;
let served: OpenApiDocument;
let secret: string;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Ajv 2020-12 over the served document, as in test/unit/openapi.test.ts. A second instance adds
// `unevaluatedProperties: false` to every object schema of the components, so a member the
// handlers send but the document does not declare fails too.
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

/** Closes every object schema with declared properties (conditional subschemas are left as they are). */
function closeObjects(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(closeObjects);
  if (!isObject(value)) return value;
  const closed: JsonObject = {};
  for (const [key, inner] of Object.entries(value)) {
    closed[key] = ['allOf', 'anyOf', 'oneOf', 'if', 'then', 'else', 'not'].includes(key) ? inner : closeObjects(inner);
  }
  if (value['type'] === 'object' && isObject(value['properties'])) closed['unevaluatedProperties'] = false;
  return closed;
}

function newAjv(document: OpenApiDocument, closed: boolean): Ajv2020 {
  const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
  addFormats.default(ajv);
  for (const [name, schema] of Object.entries(document.components.schemas)) {
    const prepared = rewriteRefs(closed ? closeObjects(schema) : schema) as JsonObject;
    ajv.addSchema({ ...prepared, $id: SCHEMA_BASE + name });
  }
  return ajv;
}

let documented: Ajv2020;
let closed: Ajv2020;
const compiled = new Map<string, { documented: ValidateFunction; closed: ValidateFunction }>();

function validatorsFor(schema: unknown): { documented: ValidateFunction; closed: ValidateFunction } {
  const key = JSON.stringify(schema);
  let found = compiled.get(key);
  if (found === undefined) {
    const prepared = rewriteRefs(schema) as JsonObject;
    found = { documented: documented.compile(prepared), closed: closed.compile(prepared) };
    compiled.set(key, found);
  }
  return found;
}

function assertMatches(schema: unknown, value: unknown, label: string): void {
  const { documented: validate, closed: validateClosed } = validatorsFor(schema);
  assert.ok(validate(value), `${label}: does not match the documented schema: ${JSON.stringify(validate.errors)}\n${JSON.stringify(value)}`);
  assert.ok(validateClosed(value), `${label}: carries members the document does not declare: ${JSON.stringify(validateClosed.errors)}\n${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------------------------
// The document's operations, and what was answered.
// ---------------------------------------------------------------------------------------------

function operation(path: string, method: Method): OperationObject {
  const op = served.paths[path]?.[method];
  assert.ok(op !== undefined, `${method.toUpperCase()} ${path} is not documented`);
  return op;
}

function responseOf(op: OperationObject, status: number): ResponseObject {
  const found = op.responses[String(status)];
  assert.ok(found !== undefined, `${op.operationId} does not document ${status}`);
  assert.ok(!('$ref' in found), `${op.operationId} ${status} is a reference`);
  return found;
}

function header(value: HeaderObject | ReferenceObject): HeaderObject {
  if (!('$ref' in value)) return value;
  const name = value.$ref.replace('#/components/headers/', '');
  const found = served.components.headers[name];
  assert.ok(found !== undefined, `dangling ${value.$ref}`);
  return found;
}

/** The problem codes a problem+json response allows (its `allOf` narrowing). */
function problemCodes(res: ResponseObject): string[] | undefined {
  const allOf = res.content?.['application/problem+json']?.schema?.['allOf'];
  if (!Array.isArray(allOf)) return undefined;
  return (allOf[1] as { properties: { code: { enum: string[] } } }).properties.code.enum;
}

/** Headers of ours that must be documented wherever they are sent. */
const KURIR_HEADERS = ['x-request-id', 'cache-control', 'location', 'retry-after', 'idempotent-replayed', 'www-authenticate'];

/** `operationId status` and `operationId status code`, for every answer checked. */
const answered = new Set<string>();

function assertDocumented(op: OperationObject, reply: HttpReply, label: string): void {
  const res = responseOf(op, reply.status);
  answered.add(`${op.operationId} ${reply.status}`);

  const contentType = reply.headers.get('content-type') ?? '';
  const essence = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  const media = res.content?.[essence];
  assert.ok(media?.schema !== undefined, `${label}: ${reply.status} answered as "${contentType}", documented: ${Object.keys(res.content ?? {}).join(', ')}`);
  const body: unknown = essence.endsWith('json') ? JSON.parse(reply.text) : reply.text;
  assertMatches(media.schema, body, label);

  const declared = res.headers ?? {};
  for (const [name, declaration] of Object.entries(declared)) {
    const { required, schema } = header(declaration);
    const value = reply.headers.get(name);
    if (value === null) {
      assert.ok(required !== true, `${label}: required header ${name} is missing`);
      continue;
    }
    const typed = schema['type'] === 'integer' && /^-?\d+$/.test(value) ? Number(value) : value;
    assertMatches(schema, typed, `${label}: header ${name}`);
  }
  const declaredNames = new Set(Object.keys(declared).map((name) => name.toLowerCase()));
  for (const name of KURIR_HEADERS) {
    if (reply.headers.has(name)) assert.ok(declaredNames.has(name), `${label}: header ${name} is sent but not documented for ${reply.status}`);
  }

  if (essence === 'application/problem+json') {
    assert.ok(isObject(body));
    const codes = problemCodes(res);
    assert.ok(codes?.includes(String(body['code'])), `${label}: ${op.operationId} ${reply.status} does not list code ${String(body['code'])}`);
    answered.add(`${op.operationId} ${reply.status} ${String(body['code'])}`);
    const retryAfter = reply.headers.get('retry-after');
    if (typeof body['retryAfterSeconds'] === 'number' || retryAfter !== null) {
      assert.equal(retryAfter, String(body['retryAfterSeconds']), `${label}: Retry-After and retryAfterSeconds differ`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------------------

interface Call {
  /** Substituted for `{id}` in the path template. */
  id?: string;
  /** Appended to the path, without `?`. */
  query?: string;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
  tenant?: Tenant | null;
}

interface Expected {
  status: number;
  code?: string;
  rule?: string | RegExp;
}

/** Sends one request, checks the answer is the expected one and that the document describes it. */
async function expectAnswer(method: Method, template: string, call: Call, expected: Expected): Promise<HttpReply> {
  const op = operation(template, method);
  const path = template.replace('{id}', encodeURIComponent(call.id ?? '')) + (call.query === undefined ? '' : `?${call.query}`);
  const requestId = `contract-${randomUUID()}`;
  const headers: Record<string, string> = { 'X-Request-Id': requestId, ...call.headers };
  const tenant = call.tenant === undefined ? 'acme' : call.tenant;
  const reply = await k.request(method.toUpperCase(), path, {
    headers: tenant === null ? headers : { ...authorization(tenant), ...headers },
    tenant: null,
    ...(call.body === undefined ? {} : { body: call.body }),
    ...(call.rawBody === undefined ? {} : { rawBody: call.rawBody }),
  });
  const label = `${method.toUpperCase()} ${path}`;
  assert.equal(reply.status, expected.status, `${label}: ${reply.text}`);
  if (expected.code !== undefined) assert.equal(reply.body['code'], expected.code, `${label}: ${reply.text}`);
  if (expected.rule !== undefined) {
    if (typeof expected.rule === 'string') assert.equal(reply.body['rule'], expected.rule, `${label}: ${reply.text}`);
    else assert.match(String(reply.body['rule']), expected.rule, `${label}: ${reply.text}`);
  }
  assert.equal(reply.headers.get('x-request-id'), requestId, `${label}: X-Request-Id is echoed`);
  assertDocumented(op, reply, label);
  return reply;
}

const CREATE = '/v1/verifications';
const GET = '/v1/verifications/{id}';
const CHECK = '/v1/verifications/{id}/check';
const RESEND = '/v1/verifications/{id}/resend';
const CANCEL = '/v1/verifications/{id}/cancel';
const LIMITS = '/v1/limits';
const WEBHOOK = '/v1/webhooks/ycloud';
const UNKNOWN_ID = 'ver_000000000000000000000000';

/** A created verification and, once the simulator got it, its code. */
async function created(tenant: Tenant, last4 = '0000', extra: JsonObject = {}): Promise<{ id: string; to: string; code: () => Promise<string> }> {
  const to = magicNumber(last4);
  const reply = await expectAnswer('post', CREATE, { tenant, body: { to, purpose: 'login', ...extra } }, { status: 202 });
  const id = String(reply.body['id']);
  assert.equal(reply.headers.get('location'), `/v1/verifications/${id}`);
  return {
    id,
    to,
    code: async () => (await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp')).code ?? '',
  };
}

function authorization(tenant: Tenant): Record<string, string> {
  return { Authorization: `Bearer ${tenant === 'gamma' || tenant === 'delta' ? EXTRA_KEYS[tenant] : TENANTS[tenant]}` };
}

/** Polls the public view until `predicate` holds (not a checked answer: only the final GET is). */
async function waitForView(tenant: Tenant, id: string, predicate: (deliveries: JsonObject[]) => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const reply = await k.request('GET', `/v1/verifications/${id}`, { tenant: null, headers: authorization(tenant) });
    last = reply.text;
    if (reply.status === 200 && predicate(reply.body['deliveries'] as JsonObject[])) return;
    await pause(25);
  }
  assert.fail(`timed out waiting on ${id}; last seen: ${last}`);
}

function wrongCode(code: string): string {
  return code === '000000' ? '111111' : '000000';
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Past the policy's 1 s resend cooldown. */
const AFTER_COOLDOWN_MS = 1100;

before(async () => {
  k = await startKurir({
    KURIR_POLICY_FILE: fileURLToPath(new URL('../fixtures/contract.policy.yaml', import.meta.url)),
    KURIR_API_KEYS: [...Object.entries(TENANTS), ...Object.entries(EXTRA_KEYS)].map(([tenant, key]) => `${tenant}=${key}`).join(','),
  });
  secret = k.kurir.services.config.provider.webhookSecret;
  const reply = await k.request('GET', '/openapi.json', { tenant: null });
  assert.equal(reply.status, 200, reply.text);
  served = JSON.parse(reply.text) as OpenApiDocument;
  documented = newAjv(served, false);
  closed = newAjv(served, true);
});
after(async () => {
  await k.close();
});

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

describe('OpenAPI contract, over HTTP', () => {
  test('GET /openapi.json serves the document of the code, and the operations endpoints answer as documented', async () => {
    assert.deepEqual(served, JSON.parse(JSON.stringify(openApiDocument())));
    await expectAnswer('get', '/openapi.json', { tenant: null }, { status: 200 });
    const health = await expectAnswer('get', '/healthz', { tenant: null }, { status: 200 });
    assert.deepEqual(health.body, { status: 'ok' });
    const ready = await expectAnswer('get', '/readyz', { tenant: null }, { status: 200 });
    assert.deepEqual(ready.body, { status: 'ready' });
    const metrics = await expectAnswer('get', '/metrics', { tenant: null }, { status: 200 });
    assert.match(metrics.text, /kurir_verifications_created_total/);
  });

  test('401 on every bearer endpoint, with WWW-Authenticate', async () => {
    const bearer = [
      ['post', CREATE], ['get', GET], ['post', CHECK], ['post', RESEND], ['post', CANCEL], ['get', LIMITS],
    ] as const;
    for (const [method, path] of bearer) {
      const attempts: Record<string, string>[] = [{}, { Authorization: 'Bearer not-a-key-0000000000' }];
      for (const headers of attempts) {
        const reply = await expectAnswer(method, path, { id: UNKNOWN_ID, query: 'to=%2B6281234567890', tenant: null, headers }, { status: 401, code: 'unauthorized' });
        assert.match(reply.headers.get('www-authenticate') ?? '', /^Bearer realm="kurir"$/);
      }
    }
  });

  test('400 invalid_json, 413 and 415 on every endpoint that reads a JSON body', async () => {
    for (const path of [CREATE, CHECK, RESEND, CANCEL]) {
      const call = { id: UNKNOWN_ID };
      await expectAnswer('post', path, { ...call, rawBody: '{"to": "+62', headers: { 'Content-Type': 'application/json' } }, { status: 400, code: 'invalid_json' });
      await expectAnswer('post', path, { ...call, body: { pad: 'x'.repeat(20_000) } }, { status: 413, code: 'payload_too_large' });
      await expectAnswer('post', path, { ...call, rawBody: 'code=123456', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }, { status: 415, code: 'unsupported_media_type' });
    }
  });

  test('create: 202 (phone and email), the other 400s, 403 and 422', async () => {
    const phone = await created('gamma');
    const email = await expectAnswer('post', CREATE, { tenant: 'gamma', body: { to: `Ana.${randomUUID().slice(0, 8)}@Example.com`, purpose: 'signup', locale: 'es' } }, { status: 202 });
    assert.match(String(email.body['to']), /^ana\.[0-9a-f]{8}@example\.com$/);
    assert.deepEqual(email.body['plan'], ['email']);
    assert.ok(phone.id.startsWith('ver_'));

    const to = magicNumber('0000');
    const cases: [JsonObject, string][] = [
      [{ to, purpose: 'login', chanel: 'sms' }, 'validation_failed'],
      [{ to, purpose: 'login', ttlSeconds: 3600 }, 'validation_failed'],
      [{ to: '+62123', purpose: 'login' }, 'invalid_destination'],
      [{ to: 'user@@example', purpose: 'login' }, 'invalid_destination'],
      [{ to, purpose: 'karaoke' }, 'unknown_purpose'],
      [{ to, purpose: 'login', channel: 'email' }, 'channel_not_allowed'],
    ];
    for (const [body, code] of cases) await expectAnswer('post', CREATE, { body }, { status: 400, code });
    await expectAnswer('post', CREATE, { body: [{ to, purpose: 'login' }] }, { status: 400, code: 'validation_failed' });
    await expectAnswer('post', CREATE, { body: { to, purpose: 'login' }, headers: { 'Idempotency-Key': 'x'.repeat(300) } }, { status: 400, code: 'invalid_idempotency_key' });

    // A fixed-line number (London); and, for acme, an SMS to Indonesia (geo).
    await expectAnswer('post', CREATE, { body: { to: '+442079460958', purpose: 'login' } }, { status: 403, code: 'destination_not_allowed', rule: 'number_type' });
    await expectAnswer('post', CREATE, { body: { to: magicNumber('0000'), purpose: 'login', channel: 'sms' } }, { status: 403, code: 'destination_not_allowed', rule: 'geo' });
  });

  test('create: idempotent replay (also of an approved verification) and 422 for a reused key', async () => {
    const to = magicNumber('0000');
    const key = `contract-${randomUUID()}`;
    const body = { to, purpose: 'payment' };
    const first = await expectAnswer('post', CREATE, { tenant: 'beta', body, headers: { 'Idempotency-Key': key } }, { status: 202 });
    assert.equal(first.headers.get('idempotent-replayed'), null);
    const replay = await expectAnswer('post', CREATE, { tenant: 'beta', body, headers: { 'Idempotency-Key': key } }, { status: 202 });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(replay.body['id'], first.body['id']);
    await expectAnswer('post', CREATE, { tenant: 'beta', body: { ...body, purpose: 'login' }, headers: { 'Idempotency-Key': key } }, { status: 422, code: 'idempotency_key_reused' });

    const id = String(first.body['id']);
    const message = await k.simulator.waitForMessage((m) => m.to === to && m.channel === 'whatsapp');
    const approved = await expectAnswer('post', CHECK, { tenant: 'beta', id, body: { code: message.code } }, { status: 200 });
    assert.equal(approved.body['status'], 'approved');
    const later = await expectAnswer('post', CREATE, { tenant: 'beta', body, headers: { 'Idempotency-Key': key } }, { status: 202 });
    assert.equal(later.headers.get('idempotent-replayed'), 'true');
    assert.equal(later.body['status'], 'approved');
    assert.equal(k.sentTo(to).length, 1);
  });

  test('create: 429 rate_limited on the second code to one number, budget_exhausted without SMS budget', async () => {
    const first = await created('acme');
    const second = await expectAnswer('post', CREATE, { body: { to: first.to, purpose: 'login' } }, { status: 429, code: 'rate_limited', rule: /^destination_(cooldown|10m)$/ });
    assert.ok(Number(second.headers.get('retry-after')) >= 1);
    const budget = await expectAnswer('post', CREATE, { tenant: 'beta', body: { to: magicNumber('0000'), purpose: 'login', channel: 'sms' } }, { status: 429, code: 'budget_exhausted', rule: 'budget_sms' });
    assert.ok(Number(budget.headers.get('retry-after')) <= 86_400);
  });

  test('get: 200 with deliveries (delivered, and failed with an SMS fallback), 404', async () => {
    const delivered = await created('gamma');
    await waitForView('gamma', delivered.id, (deliveries) => deliveries[0]?.['status'] === 'delivered');
    const view = await expectAnswer('get', GET, { tenant: 'gamma', id: delivered.id }, { status: 200 });
    assert.equal((view.body['deliveries'] as unknown[]).length, 1);

    const fallback = await created('gamma', '1001');
    await waitForView('gamma', fallback.id, (deliveries) => deliveries[1]?.['status'] === 'delivered', 6000);
    const twice = await expectAnswer('get', GET, { tenant: 'gamma', id: fallback.id }, { status: 200 });
    const deliveries = twice.body['deliveries'] as JsonObject[];
    assert.equal(deliveries[0]?.['status'], 'failed');
    assert.equal(deliveries[0]?.['fellBackTo'], 2);
    assert.equal(deliveries[1]?.['channel'], 'sms');

    await expectAnswer('get', GET, { id: UNKNOWN_ID }, { status: 404, code: 'not_found' });
    await expectAnswer('get', GET, { id: 'nope' }, { status: 404, code: 'not_found' });
    await expectAnswer('get', GET, { tenant: 'beta', id: delivered.id }, { status: 404, code: 'not_found' });
  });

  test('check: 200 for approved, pending, max_attempts, expired and canceled; 400', async () => {
    const statuses = new Set<string>();
    const check = async (tenant: Tenant, id: string, code: string) => {
      const reply = await expectAnswer('post', CHECK, { tenant, id, body: { code } }, { status: 200 });
      statuses.add(String(reply.body['status']));
      return reply.body;
    };

    const approving = await created('beta');
    const code = await approving.code();
    assert.deepEqual(await check('beta', approving.id, code), { id: approving.id, status: 'approved', valid: true, attemptsRemaining: 1 });
    assert.equal((await check('beta', approving.id, code))['status'], 'expired');
    const view = await expectAnswer('get', GET, { tenant: 'beta', id: approving.id }, { status: 200 });
    assert.equal(typeof view.body['approvedAt'], 'string');

    const guessing = await created('beta');
    const wrong = wrongCode(await guessing.code());
    assert.deepEqual(await check('beta', guessing.id, wrong), { id: guessing.id, status: 'pending', valid: false, attemptsRemaining: 1 });
    assert.deepEqual(await check('beta', guessing.id, wrong), { id: guessing.id, status: 'max_attempts', valid: false, attemptsRemaining: 0 });

    assert.equal((await check('beta', UNKNOWN_ID, '123456'))['status'], 'expired');
    assert.equal((await check('beta', 'nope', '123456'))['status'], 'expired');

    const canceling = await created('beta');
    await expectAnswer('post', CANCEL, { tenant: 'beta', id: canceling.id }, { status: 200 });
    assert.equal((await check('beta', canceling.id, '123456'))['status'], 'canceled');

    assert.deepEqual([...statuses].sort(), ['approved', 'canceled', 'expired', 'max_attempts', 'pending']);
    const enumerated = (served.components.schemas['CheckResult'] as { properties: { status: { enum: string[] } } }).properties.status.enum;
    assert.deepEqual([...enumerated].sort(), [...statuses].sort(), 'every documented check status is reached');

    for (const body of [{ code: '12a456' }, { code: 123456 }, {}, { code: '123456', extra: true }]) {
      await expectAnswer('post', CHECK, { tenant: 'beta', id: canceling.id, body }, { status: 400, code: 'validation_failed' });
    }
  });

  test('cancel: 200, 409 twice, 404; resend and get of a canceled verification', async () => {
    const target = await created('beta');
    const canceled = await expectAnswer('post', CANCEL, { tenant: 'beta', id: target.id }, { status: 200 });
    assert.deepEqual(canceled.body, { id: target.id, status: 'canceled' });
    const twice = await expectAnswer('post', CANCEL, { tenant: 'beta', id: target.id }, { status: 409, code: 'verification_not_pending' });
    assert.equal(twice.body['verificationStatus'], 'canceled');
    await expectAnswer('post', RESEND, { tenant: 'beta', id: target.id }, { status: 409, code: 'verification_not_pending' });
    const view = await expectAnswer('get', GET, { tenant: 'beta', id: target.id }, { status: 200 });
    assert.equal(view.body['status'], 'canceled');
    await expectAnswer('post', CANCEL, { id: UNKNOWN_ID }, { status: 404, code: 'not_found' });
    await expectAnswer('post', CANCEL, { id: 'nope' }, { status: 404, code: 'not_found' });
  });

  test('resend: 429 resend_cooldown, budget_exhausted, 400 channel_not_allowed, 202, then 429 max_sends_reached', async () => {
    const target = await created('beta');
    const cooldown = await expectAnswer('post', RESEND, { tenant: 'beta', id: target.id }, { status: 429, code: 'resend_cooldown' });
    assert.equal(cooldown.headers.get('retry-after'), '1');
    await pause(AFTER_COOLDOWN_MS);
    await expectAnswer('post', RESEND, { tenant: 'beta', id: target.id, body: { channel: 'sms' } }, { status: 429, code: 'budget_exhausted', rule: 'budget_sms' });
    await expectAnswer('post', RESEND, { tenant: 'beta', id: target.id, body: { channel: 'email' } }, { status: 400, code: 'channel_not_allowed' });
    const resent = await expectAnswer('post', RESEND, { tenant: 'beta', id: target.id }, { status: 202 });
    assert.deepEqual(resent.body, { id: target.id, status: 'pending', delivery: 2, channel: 'whatsapp' });
    await pause(AFTER_COOLDOWN_MS);
    const last = await expectAnswer('post', RESEND, { tenant: 'beta', id: target.id, body: {} }, { status: 429, code: 'max_sends_reached' });
    assert.equal(last.headers.get('retry-after'), null);

    await expectAnswer('post', RESEND, { tenant: 'beta', id: target.id, body: { channel: 'fax' } }, { status: 400, code: 'validation_failed' });
    await expectAnswer('post', RESEND, { id: UNKNOWN_ID }, { status: 404, code: 'not_found' });
    await expectAnswer('post', RESEND, { id: 'nope', body: {} }, { status: 404, code: 'not_found' });
  });

  test('resend: 429 rate_limited and 403 destination_not_allowed (geo) under the send gate', async () => {
    const target = await created('acme');
    await pause(AFTER_COOLDOWN_MS);
    await expectAnswer('post', RESEND, { id: target.id }, { status: 429, code: 'rate_limited', rule: /^destination_(cooldown|10m)$/ });
    await expectAnswer('post', RESEND, { id: target.id, body: { channel: 'sms' } }, { status: 403, code: 'destination_not_allowed', rule: 'geo' });
  });

  test('a wrong code locks the destination: 429 destination_locked on check, resend and create', async () => {
    const target = await created('delta');
    const wrong = wrongCode(await target.code());
    const first = await expectAnswer('post', CHECK, { tenant: 'delta', id: target.id, body: { code: wrong } }, { status: 200 });
    assert.equal(first.body['status'], 'pending');
    const locked = { status: 429, code: 'destination_locked', rule: 'destination_lockout' };
    const check = await expectAnswer('post', CHECK, { tenant: 'delta', id: target.id, body: { code: wrong } }, locked);
    assert.ok(Number(check.headers.get('retry-after')) > 60);
    await pause(AFTER_COOLDOWN_MS);
    await expectAnswer('post', RESEND, { tenant: 'delta', id: target.id }, locked);
    await expectAnswer('post', CREATE, { tenant: 'delta', body: { to: target.to, purpose: 'login' } }, locked);

    const limits = await expectAnswer('get', LIMITS, { tenant: 'delta', query: `to=${encodeURIComponent(target.to)}` }, { status: 200 });
    assert.equal((limits.body['lockout'] as JsonObject)['locked'], true);
  });

  test('limits: 200 for a phone number (with ip) and an email address, 400 validation_failed and invalid_destination', async () => {
    const used = await created('acme');
    const phone = await expectAnswer('get', LIMITS, { query: `to=${encodeURIComponent(used.to)}&ip=203.0.113.7` }, { status: 200 });
    assert.equal(phone.body['to'], used.to);
    const rules = (phone.body['limits'] as JsonObject[]).map((limit) => limit['rule']);
    assert.ok(rules.includes('destination_10m') && rules.includes('ip_destinations'), JSON.stringify(rules));
    const tenMinutes = (phone.body['limits'] as JsonObject[]).find((limit) => limit['rule'] === 'destination_10m');
    assert.deepEqual([tenMinutes?.['limit'], tenMinutes?.['used'], tenMinutes?.['remaining']], [1, 1, 0]);

    const budgets = await expectAnswer('get', LIMITS, { tenant: 'beta', query: `to=${encodeURIComponent(magicNumber('0000'))}` }, { status: 200 });
    const sms = (budgets.body['budgets'] as JsonObject[]).find((budget) => budget['channel'] === 'sms');
    assert.equal(sms?.['dailyMessages'], 0);
    await expectAnswer('get', LIMITS, { tenant: 'gamma', query: 'to=Someone%40Example.com&ip=2001%3Adb8%3A%3A1' }, { status: 200 });

    for (const query of ['', 'ip=203.0.113.7', `to=${encodeURIComponent(used.to)}&ip=999.1.1.1`, `to=${encodeURIComponent(used.to)}&extra=1`]) {
      await expectAnswer('get', LIMITS, { query }, { status: 400, code: 'validation_failed' });
    }
    await expectAnswer('get', LIMITS, { query: 'to=not-a-number' }, { status: 400, code: 'invalid_destination' });
  });

  test('webhook: 200 recorded, duplicate and ignored; 400, 401, 413, 415', async () => {
    const post = (rawBody: string, headers: Record<string, string>, expected: Expected) =>
      expectAnswer('post', WEBHOOK, { tenant: null, rawBody, headers: { 'Content-Type': 'application/json', ...headers } }, expected);
    const signed = (body: string) => ({ 'YCloud-Signature': signatureHeader(secret, Math.floor(Date.now() / 1000), body) });
    // A verification the simulator never reports delivered, so only this event can deliver it.
    const target = await created('acme', '1002');
    const message = await k.simulator.waitForMessage((m) => m.to === target.to && m.channel === 'whatsapp');
    const receipt = (whatsappMessage: JsonObject) =>
      JSON.stringify({ id: `evt_${randomUUID()}`, type: 'whatsapp.message.updated', apiVersion: 'v2', createTime: new Date().toISOString(), whatsappMessage });
    const event = receipt({ id: message.id, wabaId: 'waba_1', from: '+15550001000', to: target.to, status: 'delivered', externalId: `${target.id}-1` });
    assert.deepEqual((await post(event, signed(event), { status: 200 })).body, { received: true });
    assert.deepEqual((await post(event, signed(event), { status: 200 })).body, { received: true, duplicate: true });
    const unknown = receipt({ id: `wamid.${randomUUID()}`, wabaId: 'waba_1', from: '+15550001000', to: magicNumber('0000'), status: 'delivered' });
    assert.deepEqual((await post(unknown, signed(unknown), { status: 200 })).body, { received: true, ignored: true });
    const inbound = JSON.stringify({ id: `evt_${randomUUID()}`, type: 'whatsapp.inbound_message.received', apiVersion: 'v2' });
    assert.deepEqual((await post(inbound, signed(inbound), { status: 200 })).body, { received: true, ignored: true });

    await post('{not json', signed('{not json'), { status: 400, code: 'invalid_json' });
    await post('{"type":"x"}', signed('{"type":"x"}'), { status: 400, code: 'validation_failed' });
    await post(event, {}, { status: 401, code: 'invalid_signature' });
    await post(event, { 'YCloud-Signature': signatureHeader('whsec_someone_else', Math.floor(Date.now() / 1000), event) }, { status: 401, code: 'invalid_signature' });
    const huge = JSON.stringify({ id: 'evt_huge', type: 'x', pad: 'x'.repeat(300_000) });
    await post(huge, signed(huge), { status: 413, code: 'payload_too_large' });
    await expectAnswer('post', WEBHOOK, { tenant: null, rawBody: event, headers: { 'Content-Type': 'text/plain', ...signed(event) } }, { status: 415, code: 'unsupported_media_type' });
  });

  test('stats: 200 with and without filters, 400 validation_failed, 401', async () => {
    const STATS = '/v1/stats';
    const all = await expectAnswer('get', STATS, {}, { status: 200 });
    assert.ok(Number(all.body['created']) > 0, all.text);
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    await expectAnswer('get', STATS, { tenant: 'gamma', query: `from=${encodeURIComponent(hourAgo)}&country=id&channel=sms` }, { status: 200 });
    for (const query of ['from=yesterday', 'channel=fax', 'country=IDN', 'extra=1', `from=${encodeURIComponent(new Date().toISOString())}&to=${encodeURIComponent(hourAgo)}`, 'from=2020-01-01T00:00:00Z&to=2020-01-09T00:00:00Z']) {
      await expectAnswer('get', STATS, { query }, { status: 400, code: 'validation_failed' });
    }
    const attempts: Record<string, string>[] = [{}, { Authorization: 'Bearer not-a-key-0000000000' }];
    for (const headers of attempts) {
      await expectAnswer('get', STATS, { tenant: null, headers }, { status: 401, code: 'unauthorized' });
    }
  });

  test('every documented answer was reached (except 500 and 503)', () => {
    const missing: string[] = [];
    for (const [, item] of Object.entries(served.paths)) {
      for (const method of ['get', 'post'] as const) {
        const op = item[method];
        if (op === undefined) continue;
        for (const [status, res] of Object.entries(op.responses)) {
          if (status === '500' || status === '503') continue;
          assert.ok(!('$ref' in res));
          if (!answered.has(`${op.operationId} ${status}`)) missing.push(`${op.operationId} ${status}`);
          for (const code of problemCodes(res) ?? []) {
            if (!answered.has(`${op.operationId} ${status} ${code}`)) missing.push(`${op.operationId} ${status} ${code}`);
          }
        }
      }
    }
    assert.deepEqual(missing, [], 'documented but never answered');
  });
});
