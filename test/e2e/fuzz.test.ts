import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { after, before, describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { signatureHeader } from '../../common/providers/ycloud/ycloud-signature.js';
import { TENANTS, magicNumber, startKurir, type KurirHarness } from '../helpers/kurir.js';

/**
 * Property-based fuzzing of every JSON endpoint and of the YCloud webhook over real HTTP, with
 * every role running (API, workers, scheduler, simulator) on the real Redis. Whatever arrives, the
 * answer is a 2xx or a 4xx `application/problem+json` document, never a 5xx; the process stays up;
 * nothing pollutes `Object.prototype` / `Array.prototype`; and the workers still deliver afterwards.
 *
 * Seeds are fixed (override with FUZZ_SEED=<int>); fast-check prints the seed and the shrunk
 * counterexample of a failing property.
 */

let k: KurirHarness;
let secret: string;

const BASE_SEED = Number(process.env.FUZZ_SEED ?? 20_250_611);
const POLICY = fileURLToPath(new URL('../fixtures/e2e.policy.yaml', import.meta.url));

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

type Body = string | Uint8Array;

interface Req {
  method: string;
  path: string;
  headers?: Record<string, string | undefined>;
  body?: Body;
  /** Tenant whose key goes into Authorization (default acme); null: no Authorization at all. */
  tenant?: keyof typeof TENANTS | null;
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

interface Stats {
  sent: number;
  refusedByFetch: number;
  statuses: Map<number, number>;
}

let stats: Stats = { sent: 0, refusedByFetch: 0, statuses: new Map() };

/** undici refuses some header values only when dispatching (control characters `new Headers` lets through). */
function refusedByUndici(error: unknown): boolean {
  const cause = error instanceof Error ? error.cause : undefined;
  return typeof cause === 'object' && cause !== null && (cause as { code?: unknown }).code === 'UND_ERR_INVALID_ARG';
}

function preview(value: Body | undefined, max = 300): string {
  if (value === undefined) return '(none)';
  const text = typeof value === 'string' ? value : `bytes:${Buffer.from(value).toString('hex')}`;
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text);
}

function describeReq(req: Req): string {
  return `${req.method} ${req.path.length > 300 ? `${req.path.slice(0, 300)}…` : req.path} headers=${JSON.stringify(req.headers ?? {})} auth=${req.tenant === null ? 'as in headers' : `Bearer <${req.tenant ?? 'acme'} key>`} body=${preview(req.body)}`;
}

/**
 * Sends one request. Returns undefined when fetch itself refuses it before anything goes on the
 * wire (an invalid header value such as CR/LF, a non-ByteString character): those are "not sent".
 */
async function send(req: Req): Promise<Answer | undefined> {
  const given: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers ?? {})) if (value !== undefined) given[name] = value;
  const tenant = req.tenant === undefined ? 'acme' : req.tenant;
  if (tenant !== null && !Object.keys(given).some((name) => name.toLowerCase() === 'authorization')) {
    given.Authorization = `Bearer ${TENANTS[tenant]}`;
  }
  let headers: Headers;
  let url: URL;
  try {
    headers = new Headers(given);
    url = new URL(`${k.url}${req.path}`);
  } catch {
    stats.refusedByFetch += 1;
    return undefined;
  }
  let response: Response;
  try {
    response = await fetch(url, {
      method: req.method,
      headers,
      ...(req.body === undefined ? {} : { body: req.body }),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (error) {
    if (refusedByUndici(error)) {
      stats.refusedByFetch += 1;
      return undefined;
    }
    // Headers and URL were valid, so this is the server: a dropped connection, a crash or a hang.
    throw new Error(`request failed (${error instanceof Error ? `${error.message} ${String(error.cause ?? '')}` : String(error)}): ${describeReq(req)}`);
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  stats.sent += 1;
  stats.statuses.set(response.status, (stats.statuses.get(response.status) ?? 0) + 1);
  return { status: response.status, headers: response.headers, text, json };
}

/**
 * The invariant every answer must hold: no 5xx; a 4xx is a problem document about itself; and,
 * like every answer of the API (openapi.ts), it carries its request id and is not cacheable.
 */
function assertSafe(req: Req, answer: Answer): void {
  const where = () => `${describeReq(req)}\n  → ${answer.status} ${answer.headers.get('content-type') ?? '(no content-type)'} ${answer.text.slice(0, 400)}`;
  if (answer.status >= 500) assert.fail(`5xx answer:\n  ${where()}`);
  assert.notEqual(answer.headers.get('x-request-id') ?? '', '', `answer without X-Request-Id:\n  ${where()}`);
  assert.equal(answer.headers.get('cache-control'), 'no-store', `answer without Cache-Control: no-store:\n  ${where()}`);
  if (answer.status >= 400) {
    assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json/, `4xx without problem+json:\n  ${where()}`);
    const problem = answer.json;
    assert.ok(typeof problem === 'object' && problem !== null && !Array.isArray(problem), `4xx body is not an object:\n  ${where()}`);
    const doc = problem as Record<string, unknown>;
    assert.equal(doc.status, answer.status, `problem.status differs from HTTP status:\n  ${where()}`);
    assert.equal(typeof doc.code, 'string', `problem without code:\n  ${where()}`);
    assert.equal(typeof doc.type, 'string', `problem without type:\n  ${where()}`);
  }
}

/** Sends and checks one request; undefined when fetch refused to send it. */
async function probe(req: Req): Promise<Answer | undefined> {
  const answer = await send(req);
  if (answer !== undefined) assertSafe(req, answer);
  return answer;
}

function hashName(name: string): number {
  let h = 0;
  for (const ch of name) h = (Math.imul(h, 31) + (ch.codePointAt(0) ?? 0)) | 0;
  return h;
}

async function fuzz<T>(t: TestContext, arb: fc.Arbitrary<T>, numRuns: number, run: (value: T) => Promise<void>): Promise<void> {
  const seed = (BASE_SEED ^ hashName(t.name)) | 0;
  stats = { sent: 0, refusedByFetch: 0, statuses: new Map() };
  const started = Date.now();
  try {
    await fc.assert(fc.asyncProperty(arb, run), { numRuns, seed });
  } catch (error) {
    // fast-check's report holds the (possibly 300 kB) counterexample; the cause holds our message.
    const report = error instanceof Error ? error.message : String(error);
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : '';
    const short = report.length > 3000 ? `${report.slice(0, 3000)}…(${report.length} chars)` : report;
    throw new Error(`${short}\n--- failing request (shrunk) ---\n${cause}`);
  } finally {
    const statuses = [...stats.statuses.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ');
    t.diagnostic(
      `seed=${seed} runs=${numRuns} sent=${stats.sent} refusedByFetch=${stats.refusedByFetch} ${Date.now() - started}ms statuses: ${statuses}`,
    );
    totals.cases += numRuns;
    totals.sent += stats.sent;
    totals.refusedByFetch += stats.refusedByFetch;
  }
}

const totals = { cases: 0, sent: 0, refusedByFetch: 0 };

// ---------------------------------------------------------------------------------------------
// Generic arbitraries

const HEX = [...'0123456789abcdef'];
const hex = (length: number) => fc.string({ unit: fc.constantFrom(...HEX), minLength: length, maxLength: length });
const digits = (length: number) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: length, maxLength: length });
const visibleAscii = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
const latin1 = fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c));

/** JSON text of an arbitrary value. */
const asJson = (arb: fc.Arbitrary<unknown>): fc.Arbitrary<string> => arb.map((value) => JSON.stringify(value) ?? 'null');

/** A JSON object written by hand, so `__proto__` and duplicate keys really reach the parser. */
function objectText(entries: readonly (readonly [string, string])[]): string {
  return `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;
}

/** Present with probability `percent`% (the value is JSON text), else absent. */
function maybe(arb: fc.Arbitrary<string>, percent: number): fc.Arbitrary<string | undefined> {
  return fc.oneof({ weight: 100 - percent, arbitrary: fc.constant(undefined) }, { weight: percent, arbitrary: arb });
}

const anyString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('', ' ', '\u0000', '\ud800', '\udfff\ud800', '\u202e', '\u200b', 'null', 'undefined', 'NaN', '%00', '../..'),
);

/** Raw JSON number/literal texts JSON.stringify would never produce. */
const oddNumberText = fc.constantFrom(
  '1e400', '-1e400', '-0', '0.0', '1E2', '6e1', '60.000000000000001', '9007199254740993', '1e-400',
  '123456789012345678901234567890', '-9223372036854775809', '0.1e1', 'true', 'false', 'null', '[]', '{}', '""',
);

const anyJsonText = fc.oneof(
  { weight: 3, arbitrary: asJson(fc.jsonValue({ maxDepth: 3 })) },
  { weight: 1, arbitrary: asJson(fc.jsonValue({ maxDepth: 2, stringUnit: 'binary' })) },
  { weight: 1, arbitrary: oddNumberText },
);

const POISON = [
  '{"polluted":"yes"}',
  '{"prototype":{"polluted":"yes"}}',
  '{"__proto__":{"polluted":"yes"}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}',
  '[{"__proto__":{"polluted":"yes"}}]',
  '"polluted"',
  'null',
];

/** Prototype-pollution keys and duplicates of real fields, each with a hostile value. */
const hostileEntries: fc.Arbitrary<[string, string][]> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<[string, string][]>([]) },
  {
    weight: 1,
    arbitrary: fc.array(
      fc.tuple(
        fc.oneof(
          fc.constantFrom('__proto__', 'constructor', 'prototype', 'polluted', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'then'),
          fc.string({ maxLength: 12 }),
        ),
        fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...POISON) }, { weight: 1, arbitrary: anyJsonText }),
      ),
      { minLength: 1, maxLength: 3 },
    ),
  },
);

/** An object of optional fields (JSON texts) plus hostile keys, before or after the real ones. */
function hostileObject(fields: Record<string, fc.Arbitrary<string | undefined>>): fc.Arbitrary<string> {
  return fc.tuple(fc.record(fields), hostileEntries, fc.boolean()).map(([record, hostile, hostileFirst]) => {
    const real = Object.entries(record).filter((entry): entry is [string, string] => entry[1] !== undefined);
    return objectText(hostileFirst ? [...hostile, ...real] : [...real, ...hostile]);
  });
}

function deepText(depth: number, shape: 'array' | 'object' | 'mixed', leaf = '1'): string {
  if (shape === 'array') return `${'['.repeat(depth)}${leaf}${']'.repeat(depth)}`;
  if (shape === 'object') return `${'{"a":'.repeat(depth)}${leaf}${'}'.repeat(depth)}`;
  return `${'[{"a":'.repeat(depth)}${leaf}${'}]'.repeat(depth)}`;
}

const deepValueText = fc
  .tuple(fc.integer({ min: 50, max: 2000 }), fc.constantFrom<'array' | 'object' | 'mixed'>('array', 'object', 'mixed'))
  .map(([depth, shape]) => deepText(depth, shape));

function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

function decodes(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

/** A path segment or query part sent "as typed": verbatim when its %-escapes decode, else with `%` escaped. */
function verbatim(text: string): string {
  return decodes(text) ? text : text.replace(/%/g, '%25');
}

const contentEncodingChoice = fc.constantFrom<'none' | 'identity' | 'unknown' | 'gzip' | 'deflate' | 'br'>(
  'none', 'none', 'none', 'identity', 'unknown', 'gzip', 'deflate', 'br',
);

/** Applies a Content-Encoding *correctly* (valid compressed bytes); broken ones are a separate property. */
function encodeBody(body: Body, encoding: 'none' | 'identity' | 'unknown' | 'gzip' | 'deflate' | 'br'): { body: Body; header: string | undefined } {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
  switch (encoding) {
    case 'none':
      return { body, header: undefined };
    case 'identity':
      return { body, header: 'identity' };
    case 'unknown':
      return { body, header: 'x-kurir-fuzz' };
    case 'gzip':
      return { body: gzipSync(bytes), header: 'gzip' };
    case 'deflate':
      return { body: deflateSync(bytes), header: 'deflate' };
    case 'br':
      return { body: brotliCompressSync(bytes), header: 'br' };
  }
}

const contentType = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8', 'application/json;charset=latin1',
      'application/json; charset=utf-16', 'application/json; charset="utf-8"', 'application/json; foo=bar; charset=koi8-r',
      'application/JSON', 'APPLICATION/JSON', 'application/json, text/plain', 'application/problem+json', 'application/vnd.api+json',
      'application/merge-patch+json', 'text/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
      'application/octet-stream', 'application/xml', '*/*', 'application/*', '', 'application/json; charset=',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
);

const headerValue = fc.oneof(
  fc.string({ unit: visibleAscii, minLength: 1, maxLength: 300 }),
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: latin1, minLength: 1, maxLength: 20 }),
  fc.constantFrom('a\r\nX-Injected: 1', 'k\nSet-Cookie: x=1', 'ok\r', '\tleading', 'trailing ', 'a\u0000b', '', ' ', 'a b', '"quoted"'),
  fc.constantFrom('fuzz-shared-key-1', 'fuzz-shared-key-2'),
);

// ---------------------------------------------------------------------------------------------
// Domain arbitraries

const validIdNumber = digits(8).map((d) => `+62812${d}`);
const otherNumbers = fc.constantFrom(
  '+14155552671', '+5511987654321', '+919876543210', '+447911123456', '+442079460958', '+2348031234567', '+6281234561003',
  '+6281234561001', '+900000000000', '+1', '+', '+0', '+62', '+62 812-3456-0000', '(+62) 812 3456 0000', '0812345600000', '+6281234560000 ',
);
const DIGIT_SETS = ['٠١٢٣٤٥٦٧٨٩', '０１２３４５６７８９', '०१२३४५६७८९', '۰۱۲۳۴۵۶۷۸۹', '𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗'];
const unicodeDigitNumber = fc
  .tuple(validIdNumber, fc.constantFrom(...DIGIT_SETS), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([number, set, share]) => {
    const glyphs = [...set];
    return [...number].map((ch, i) => (/[0-9]/.test(ch) && i / number.length <= share ? (glyphs[Number(ch)] ?? ch) : ch)).join('');
  });
const ZERO_WIDTH = ['\u200b', '\u200c', '\u200d', '\ufeff', '\u2060', '\u00ad', '\u202e', '\u0000', '\u00a0'];
const zeroWidthNumber = fc
  .tuple(validIdNumber, fc.array(fc.tuple(fc.nat({ max: 14 }), fc.constantFrom(...ZERO_WIDTH)), { minLength: 1, maxLength: 4 }))
  .map(([number, inserts]) => {
    let out = number;
    for (const [at, ch] of inserts) out = `${out.slice(0, at)}${ch}${out.slice(at)}`;
    return out;
  });
const emails = fc.oneof(
  fc.emailAddress(),
  fc.constantFrom(
    'a@example.com', 'x+bounce@example.com', 'user@@example', '@example.com', 'a@b', '"quoted"@example.com', 'a@[127.0.0.1]',
    'A@EXAMPLE.COM', 'ü@exämple.com', 'a@example.com\n', 'a@example..com', 'a@-example.com', 'a b@example.com',
  ),
);
const longStrings = fc.oneof(
  fc.string({ minLength: 300, maxLength: 4000 }),
  fc.integer({ min: 300, max: 5000 }).map((n) => `${'a'.repeat(n)}@example.com`),
  fc.integer({ min: 300, max: 5000 }).map((n) => `+62${'8'.repeat(n)}`),
);

const toText = fc.oneof(
  { weight: 6, arbitrary: asJson(validIdNumber) },
  { weight: 2, arbitrary: asJson(otherNumbers) },
  { weight: 3, arbitrary: asJson(emails) },
  { weight: 2, arbitrary: asJson(unicodeDigitNumber) },
  { weight: 2, arbitrary: asJson(zeroWidthNumber) },
  { weight: 2, arbitrary: asJson(anyString) },
  { weight: 1, arbitrary: asJson(longStrings) },
  { weight: 1, arbitrary: anyJsonText },
);
const purposeText = fc.oneof(
  { weight: 6, arbitrary: asJson(fc.constantFrom('login', 'signup', 'payment', 'transaction', 'password_reset', 'account_recovery', 'sensitive_change')) },
  { weight: 2, arbitrary: asJson(fc.constantFrom('karaoke', 'LOGIN', 'login ', '__proto__', 'toString', 'hasOwnProperty', 'a'.repeat(41), '_x')) },
  { weight: 1, arbitrary: asJson(anyString) },
  { weight: 1, arbitrary: anyJsonText },
  // "constructor" (the one Object.prototype name the purpose regex admits) is a known bug with its own property below.
).filter((text) => text !== '"constructor"');
const channelText = fc.oneof(
  { weight: 4, arbitrary: asJson(fc.constantFrom('auto', 'whatsapp', 'sms', 'email')) },
  { weight: 1, arbitrary: asJson(fc.constantFrom('pigeon', 'SMS', '', '__proto__', 'toString', 'voice')) },
  { weight: 1, arbitrary: anyJsonText },
);
const localeText = fc.oneof(
  { weight: 3, arbitrary: asJson(fc.constantFrom('en', 'id', 'pt-BR', 'es', 'hi', 'zz', 'en_US', 'pt-br', 'zh-Hant-TW', 'x', 'toString', '__proto__')) },
  { weight: 1, arbitrary: asJson(fc.string({ maxLength: 40 })) },
  { weight: 1, arbitrary: anyJsonText },
);
const intText = (min: number, max: number) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min, max }).map(String) },
    { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double()).map((n) => JSON.stringify(n)) },
    { weight: 1, arbitrary: fc.integer({ min, max }).map((n) => JSON.stringify(String(n))) },
    { weight: 1, arbitrary: oddNumberText },
    { weight: 1, arbitrary: anyJsonText },
  );
const ipText = fc.oneof(
  asJson(fc.ipV4()),
  asJson(fc.ipV6()),
  asJson(fc.ipV4Extended()),
  asJson(fc.constantFrom('999.1.1.1', '::ffff:1.2.3.4', '1.2.3.4/24', 'fe80::1%eth0', '0x7f.1', '127.1', '::', '', ' 1.2.3.4')),
  asJson(anyString),
  anyJsonText,
);
const printableText = fc.oneof(asJson(fc.string({ maxLength: 140 })), asJson(anyString), anyJsonText);
const contextText = fc.oneof(
  { weight: 4, arbitrary: hostileObject({ ip: maybe(ipText, 60), userId: maybe(printableText, 40), deviceId: maybe(printableText, 40) }) },
  { weight: 1, arbitrary: deepValueText },
  { weight: 1, arbitrary: anyJsonText },
);

/** A create body: mostly-valid fields mixed with hostile ones, as JSON text. */
const createBodyText = hostileObject({
  to: maybe(toText, 92),
  purpose: maybe(purposeText, 90),
  channel: maybe(channelText, 30),
  locale: maybe(localeText, 30),
  ttlSeconds: maybe(intText(60, 900), 25),
  codeLength: maybe(intText(4, 10), 25),
  context: maybe(contextText, 30),
});

// ---------------------------------------------------------------------------------------------
// Real verifications (targets for ids and webhooks), created once

interface Target {
  id: string;
  to: string;
  messageIds: string[];
}

let idTargets: Target[] = [];
let webhookTargets: Target[] = [];

async function createTarget(to: string): Promise<Target> {
  const created = await k.create({ to, purpose: 'login' });
  assert.equal(created.status, 202, created.text);
  const id = String(created.body.id);
  const message = await k.simulator.waitForMessage((m) => m.to === to.toLowerCase() && m.id !== '');
  return { id, to, messageIds: [message.id] };
}

const protoSnapshots = new Map<object, Map<string | symbol, unknown>>();
const PROTOTYPES: [string, object][] = [
  ['Object.prototype', Object.prototype],
  ['Array.prototype', Array.prototype],
  ['Function.prototype', Function.prototype],
  ['String.prototype', String.prototype],
];

function ownSnapshot(target: object): Map<string | symbol, unknown> {
  const snapshot = new Map<string | symbol, unknown>();
  for (const key of Reflect.ownKeys(target)) {
    const descriptor = Object.getOwnPropertyDescriptor(target, key);
    snapshot.set(key, descriptor === undefined ? undefined : (descriptor.value ?? descriptor.get ?? descriptor.set));
  }
  return snapshot;
}

const processProblems: string[] = [];
const onUnhandled = (reason: unknown) => {
  processProblems.push(`unhandledRejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
};

before(async () => {
  for (const [, proto] of PROTOTYPES) protoSnapshots.set(proto, ownSnapshot(proto));
  process.on('unhandledRejection', onUnhandled);
  k = await startKurir({ KURIR_POLICY_FILE: POLICY });
  secret = k.kurir.services.config.provider.webhookSecret;
  // WhatsApp "sent" but never delivered (…1002), ordinary delivered numbers and an email.
  idTargets = await Promise.all([magicNumber('1002'), magicNumber('0000'), `fuzz-id-${randomUUID()}@example.com`].map(createTarget));
  webhookTargets = await Promise.all(
    [magicNumber('1002'), magicNumber('1002'), magicNumber('0000'), `fuzz-wh-${randomUUID()}@example.com`].map(createTarget),
  );
});

after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await k.close();
});

// ---------------------------------------------------------------------------------------------
// 1. POST /v1/verifications

describe('fuzz: POST /v1/verifications', () => {
  test('arbitrary JSON values as the body', async (t) => {
    await fuzz(t, fc.tuple(anyJsonText, contentEncodingChoice), 700, async ([text, encoding]) => {
      const encoded = encodeBody(text, encoding);
      await probe({
        method: 'POST',
        path: '/v1/verifications',
        headers: { 'Content-Type': 'application/json', 'Content-Encoding': encoded.header },
        body: encoded.body,
      });
    });
  });

  test('objects mixing valid and hostile fields, with random Idempotency-Key / X-Request-Id', async (t) => {
    const arb = fc.record({
      body: createBodyText,
      idempotencyKey: fc.option(headerValue, { nil: undefined, freq: 3 }),
      requestId: fc.option(headerValue, { nil: undefined, freq: 4 }),
    });
    await fuzz(t, arb, 1000, async ({ body, idempotencyKey, requestId }) => {
      await probe({
        method: 'POST',
        path: '/v1/verifications',
        headers: { 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey, 'X-Request-Id': requestId },
        body,
      });
    });
  });

  test('raw non-JSON bodies and random Content-Types / Content-Encodings', async (t) => {
    const rawBody: fc.Arbitrary<Body> = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.uint8Array({ maxLength: 2000 }),
      fc.constantFrom(
        '', 'null', 'true', '"str"', '123', '{', '{"to":', 'to=%2B6281234560000&purpose=login', '<xml/>',
        '\ufeff{"to":"+6281234560000","purpose":"login"}', '{"to":"+6281234560000","purpose":"login"}\u0000', "{'to':1}", 'NaN',
        '[1,]', '{"a":1,}', '\u2028', '{"to":"+6281234560000","purpose":"login"}{"x":1}', '{"to":"\\ud800","purpose":"login"}',
      ),
      fc.tuple(createBodyText, fc.string({ maxLength: 5 })).map(([body, tail]) => `${body}${tail}`),
      createBodyText,
    );
    const arb = fc.record({
      body: rawBody,
      contentType: fc.option(contentType, { nil: undefined, freq: 5 }),
      encoding: contentEncodingChoice,
      idempotencyKey: fc.option(headerValue, { nil: undefined, freq: 3 }),
    });
    await fuzz(t, arb, 700, async ({ body, contentType: type, encoding, idempotencyKey }) => {
      const encoded = encodeBody(body, encoding);
      await probe({
        method: 'POST',
        path: '/v1/verifications',
        headers: { 'Content-Type': type, 'Content-Encoding': encoded.header, 'Idempotency-Key': idempotencyKey },
        body: encoded.body,
      });
    });
  });

  test(
    'purpose names inherited from Object.prototype',
    async (t) => {
      const arb = fc.record({
        to: fc.oneof(validIdNumber, fc.constant('fuzz-purpose@example.com')),
        purpose: fc.constantFrom('"constructor"', '"\\u0063onstructor"'),
        ttlSeconds: fc.option(fc.integer({ min: 60, max: 900 }), { nil: undefined }),
      });
      await fuzz(t, arb, 100, async ({ to, purpose, ttlSeconds }) => {
        const body = `{"to":${JSON.stringify(to)},"purpose":${purpose}${ttlSeconds === undefined ? '' : `,"ttlSeconds":${ttlSeconds}`}}`;
        const req: Req = { method: 'POST', path: '/v1/verifications', headers: { 'Content-Type': 'application/json' }, body };
        const answer = await probe(req);
        if (answer !== undefined) assert.equal(answer.status, 400, `an unconfigured purpose was accepted: ${describeReq(req)} → ${answer.status} ${answer.text}`);
      });
    },
  );

  test('deeply nested bodies ([[[[…]]]] thousands deep, up to and past the 16 kB limit)', async (t) => {
    const arb = fc.oneof(
      fc.tuple(fc.integer({ min: 500, max: 9000 }), fc.constantFrom<'array' | 'object' | 'mixed'>('array', 'object', 'mixed')).map(([d, s]) => deepText(d, s)),
      fc.tuple(fc.integer({ min: 500, max: 2300 }), fc.constantFrom<'array' | 'object' | 'mixed'>('array', 'object', 'mixed')).map(
        ([d, s]) => `{"to":"+6281234560000","purpose":"login","context":${deepText(d, s)}}`,
      ),
      fc.integer({ min: 500, max: 7000 }).map((d) => `{"to":${deepText(d, 'array', '"+6281234560000"')},"purpose":"login"}`),
      fc.tuple(fc.integer({ min: 100, max: 8000 }), fc.integer({ min: 0, max: 8000 })).map(([open, close]) => `${'['.repeat(open)}${']'.repeat(close)}`),
    );
    await fuzz(t, arb, 150, async (body) => {
      await probe({ method: 'POST', path: '/v1/verifications', headers: { 'Content-Type': 'application/json' }, body });
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 2. /v1/verifications/:id and its actions

const ENDPOINTS = ['get', 'check', 'resend', 'cancel'] as const;
type Endpoint = (typeof ENDPOINTS)[number];

function idPath(endpoint: Endpoint, segment: string): { method: string; path: string } {
  if (endpoint === 'get') return { method: 'GET', path: `/v1/verifications/${segment}` };
  return { method: 'POST', path: `/v1/verifications/${segment}/${endpoint}` };
}

function idArbitrary(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 2, arbitrary: anyString },
    { weight: 2, arbitrary: hex(24).map((h) => `ver_${h}`) },
    { weight: 2, arbitrary: fc.constantFrom(...idTargets.map((target) => target.id), ...webhookTargets.map((target) => target.id)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '..', '../..', '../../healthz', '..%2f..%2fhealthz', '%2e%2e', '%2e%2e%2f%2e%2e%2fmetrics', '....//', '..\\..\\', 'ver_x/../../limits',
        '%00', 'ver_%00', '.', '%2F', '%5c', 'ver_abcdefghij%2F..', '?x=1', '#frag', ';jsessionid=1', '%20ver_abcdefghijkl', 'ver_abcdefghijkl%20',
        'VER_ABCDEFGHIJKL', 'ver_abcdefghijk\u0000', 'ver_ａｂｃｄｅｆｇｈｉｊ', '__proto__', 'constructor', 'hasOwnProperty', 'ver_aaaaaaaaaa-1',
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: visibleAscii, minLength: 500, maxLength: 3000 }) },
    { weight: 1, arbitrary: fc.integer({ min: 41, max: 3000 }).map((n) => `ver_${'a'.repeat(n)}`) },
  );
}

const segmentEncoding = fc.constantFrom<'component' | 'verbatim'>('component', 'verbatim');

function encodeSegment(id: string, mode: 'component' | 'verbatim'): string {
  return mode === 'component' ? encodeURIComponent(wellFormed(id)) : verbatim(id);
}

const actionBody: fc.Arbitrary<Body | undefined> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: hostileObject({ code: maybe(fc.oneof(asJson(fc.integer({ min: 4, max: 10 }).chain(digits)), asJson(anyString), anyJsonText), 85) }) },
  { weight: 2, arbitrary: hostileObject({ channel: maybe(channelText, 70) }) },
  { weight: 1, arbitrary: fc.constant('{}') },
  { weight: 2, arbitrary: anyJsonText },
  { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 100 }), fc.uint8Array({ maxLength: 200 })) },
  { weight: 1, arbitrary: deepValueText },
);

describe('fuzz: /v1/verifications/:id (GET, check, resend, cancel)', () => {
  test('arbitrary ids (url-encoded, verbatim, traversal, very long) and bodies', async (t) => {
    const arb = fc.record({
      endpoint: fc.constantFrom(...ENDPOINTS),
      id: idArbitrary(),
      mode: segmentEncoding,
      body: actionBody,
      contentType: fc.oneof({ weight: 5, arbitrary: fc.constant('application/json') }, { weight: 1, arbitrary: contentType }),
    });
    await fuzz(t, arb, 1000, async ({ endpoint, id, mode, body, contentType: type }) => {
      const { method, path } = idPath(endpoint, encodeSegment(id, mode));
      const withBody = method === 'POST' && body !== undefined;
      await probe({ method, path, headers: { 'Content-Type': withBody ? type : undefined }, ...(withBody ? { body } : {}) });
    });
  });

  test(
    'ids with malformed %-escapes',
    async (t) => {
      const arb = fc.record({
        endpoint: fc.constantFrom(...ENDPOINTS),
        before: fc.string({ unit: visibleAscii, maxLength: 10 }).map((s) => s.replace(/[%/?#]/g, '')),
        escape: fc.constantFrom('%', '%G0', '%E0%A4', '%C0%AF', '%ED%A0%80', '%FF', '%u0041', '%%', '%2', '%e0%a4%a'),
      });
      await fuzz(t, arb, 200, async ({ endpoint, before, escape }) => {
        const { method, path } = idPath(endpoint, `${before}${escape}`);
        await probe({ method, path, ...(method === 'POST' ? { headers: { 'Content-Type': 'application/json' }, body: '{}' } : {}) });
      });
    },
  );
});

// ---------------------------------------------------------------------------------------------
// 3. GET /v1/limits

describe('fuzz: GET /v1/limits', () => {
  test('arbitrary query strings', async (t) => {
    const key = fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom('to', 'ip') },
      {
        weight: 2,
        arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype', 'to[]', 'ip[0]', 'to[__proto__]', 'hasOwnProperty', 'toString', '', 'TO', 'to ', '__proto__[polluted]'),
      },
      { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
    );
    const value = fc.oneof(
      validIdNumber,
      otherNumbers,
      emails,
      unicodeDigitNumber,
      zeroWidthNumber,
      fc.ipV4(),
      fc.ipV6(),
      anyString,
      fc.constantFrom('', '%', '%zz', '+6281234560000', 'polluted', '1.2.3.4'),
      fc.string({ minLength: 300, maxLength: 2000 }),
    );
    const query = fc.oneof(
      {
        weight: 4,
        arbitrary: fc
          .tuple(fc.array(fc.tuple(key, value), { maxLength: 5 }), segmentEncoding)
          .map(([pairs, mode]) =>
            pairs.map(([name, v]) => (mode === 'component' ? `${encodeURIComponent(wellFormed(name))}=${encodeURIComponent(wellFormed(v))}` : `${name}=${v}`)).join('&'),
          ),
      },
      {
        // Mostly valid: a real destination (and ip), sometimes with hostile extras, so the handler runs past validation.
        weight: 3,
        arbitrary: fc
          .tuple(
            fc.oneof(validIdNumber, otherNumbers, emails),
            fc.option(fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('999.1.1.1', '::ffff:1.2.3.4', '')), { nil: undefined }),
            fc.option(fc.array(fc.tuple(key, value), { maxLength: 2 }), { nil: undefined, freq: 2 }),
          )
          .map(([to, ip, extra]) =>
            [
              `to=${encodeURIComponent(wellFormed(to))}`,
              ...(ip === undefined ? [] : [`ip=${encodeURIComponent(ip)}`]),
              ...(extra ?? []).map(([name, v]) => `${encodeURIComponent(wellFormed(name))}=${encodeURIComponent(wellFormed(v))}`),
            ].join('&'),
          ),
      },
      { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
    );
    await fuzz(t, query, 700, async (q) => {
      await probe({ method: 'GET', path: `/v1/limits?${q}` });
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 4. POST /v1/webhooks/ycloud

const STATUS_WORDS = ['accepted', 'sending', 'sent', 'delivered', 'read', 'failed', 'undelivered'];

function webhookArbitraries() {
  const targets = webhookTargets;
  const sequence = fc.oneof(
    fc.integer({ min: -2, max: 8 }).map(String),
    fc.nat().map(String),
    fc.constantFrom('0', '01', '1e3', '9007199254740993', '99999999999999999999', 'NaN', 'Infinity', '-1', '1.5', '', 'x', '1-1', ' 1', '1 '),
  );
  const externalId = fc.oneof(
    { weight: 4, arbitrary: asJson(fc.tuple(fc.constantFrom(...targets.map((target) => target.id)), sequence).map(([id, n]) => `${id}-${n}`)) },
    { weight: 2, arbitrary: asJson(fc.tuple(hex(24), sequence).map(([h, n]) => `ver_${h}-${n}`)) },
    { weight: 1, arbitrary: asJson(fc.constantFrom(...targets.map((target) => target.id), 'ver_', 'ver_-1', '-1', '__proto__-1', 'constructor')) },
    { weight: 1, arbitrary: asJson(anyString) },
    { weight: 1, arbitrary: anyJsonText },
  );
  const messageId = fc.oneof(
    { weight: 3, arbitrary: asJson(fc.constantFrom(...targets.flatMap((target) => target.messageIds))) },
    { weight: 2, arbitrary: asJson(fc.uuid()) },
    { weight: 1, arbitrary: asJson(anyString) },
    { weight: 1, arbitrary: anyJsonText },
  );
  const status = fc.oneof(
    { weight: 6, arbitrary: asJson(fc.constantFrom(...STATUS_WORDS)) },
    { weight: 1, arbitrary: asJson(fc.constantFrom('DELIVERED', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '', 'expired')) },
    { weight: 1, arbitrary: asJson(anyString) },
    { weight: 1, arbitrary: anyJsonText },
  );
  const errorCode = fc.oneof(
    asJson(fc.constantFrom('131026', '131049', '131047', '131000', 'RECIPIENT_IN_BLOCK_LIST', '')),
    asJson(anyString),
    asJson(fc.oneof(fc.integer(), fc.double())),
    fc.constantFrom('1e400', '-1e400', '123456789012345678901234567890', '1e-400'),
    anyJsonText,
  );
  const time = fc.oneof(
    { weight: 3, arbitrary: asJson(fc.date({ noInvalidDate: true }).map((d) => d.toISOString())) },
    {
      weight: 1,
      arbitrary: asJson(fc.constantFrom('2024-02-30T00:00:00Z', '+275760-09-13T00:00:00.000Z', '-271821-04-20T00:00:00.000Z', '0', '', 'now', '1e400', '9999-12-31')),
    },
    { weight: 1, arbitrary: anyJsonText },
  );
  const whatsappApiError = fc.oneof(hostileObject({ code: maybe(errorCode, 80), message: maybe(asJson(anyString), 50) }), anyJsonText);
  const whatsappMessage = hostileObject({
    id: maybe(messageId, 92),
    wabaId: maybe(asJson(anyString), 30),
    from: maybe(asJson(fc.constantFrom('+15550001000')), 30),
    to: maybe(toText, 40),
    status: maybe(status, 92),
    externalId: maybe(externalId, 85),
    errorCode: maybe(errorCode, 35),
    whatsappApiError: maybe(whatsappApiError, 30),
    updateTime: maybe(time, 50),
    sendTime: maybe(time, 30),
    deliverTime: maybe(time, 30),
    readTime: maybe(time, 30),
  });
  const sms = hostileObject({
    id: maybe(messageId, 92),
    to: maybe(toText, 40),
    status: maybe(status, 92),
    externalId: maybe(externalId, 85),
    errorCode: maybe(errorCode, 35),
    updateTime: maybe(time, 50),
    totalPrice: maybe(fc.oneof(asJson(fc.double()), oddNumberText), 20),
  });
  const emailDelivery = hostileObject({
    emailId: maybe(messageId, 92),
    status: maybe(status, 92),
    externalId: maybe(externalId, 85),
    errorCode: maybe(errorCode, 35),
  });
  const payload = (arb: fc.Arbitrary<string>) => fc.oneof({ weight: 5, arbitrary: arb }, { weight: 1, arbitrary: anyJsonText }, { weight: 1, arbitrary: deepValueText });
  const type = fc.oneof(
    { weight: 8, arbitrary: asJson(fc.constantFrom('whatsapp.message.updated', 'sms.message.updated', 'email.delivery.updated')) },
    { weight: 1, arbitrary: asJson(fc.constantFrom('whatsapp.inbound_message.received', 'contact.created', '', 'x'.repeat(101), '__proto__', 'toString')) },
    { weight: 1, arbitrary: asJson(anyString) },
    { weight: 1, arbitrary: anyJsonText },
  );
  const eventId = fc.oneof(
    { weight: 6, arbitrary: asJson(fc.uuid().map((u) => `evt_${u}`)) },
    { weight: 1, arbitrary: asJson(fc.constantFrom('evt_dup_1', 'evt_dup_2', '__proto__', 'x'.repeat(128), 'x'.repeat(129))) },
    { weight: 1, arbitrary: asJson(anyString) },
    { weight: 1, arbitrary: anyJsonText },
  );
  const event = hostileObject({
    id: maybe(eventId, 95),
    type: maybe(type, 95),
    apiVersion: maybe(asJson(fc.oneof(fc.constant('v2'), anyString)), 50),
    createTime: maybe(time, 60),
    whatsappMessage: maybe(payload(whatsappMessage), 50),
    sms: maybe(payload(sms), 35),
    emailDelivery: maybe(payload(emailDelivery), 30),
  });
  const body: fc.Arbitrary<Body> = fc.oneof(
    { weight: 12, arbitrary: event },
    { weight: 1, arbitrary: anyJsonText },
    { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 200 }), fc.uint8Array({ maxLength: 500 })) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 1000, max: 100_000 }), fc.constantFrom<'array' | 'object' | 'mixed'>('array', 'object', 'mixed'))
        .map(
          ([depth, shape]) =>
            `{"id":"evt_deep_${depth}","type":"whatsapp.message.updated","whatsappMessage":{"id":"m","status":"sent","errorCode":${deepText(Math.min(depth, 40_000), shape)}}}`,
        ),
    },
    { weight: 1, arbitrary: fc.integer({ min: 1000, max: 120_000 }).map((depth) => deepText(depth, 'array')) },
  );
  return { body, event };
}

function bytesOf(body: Body): Buffer {
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
}

describe('fuzz: POST /v1/webhooks/ycloud', () => {
  test('arbitrary bodies with valid signatures (parsing past the signature)', async (t) => {
    const { body } = webhookArbitraries();
    const arb = fc.record({
      body,
      skew: fc.integer({ min: -280, max: 280 }),
      contentType: fc.oneof({ weight: 8, arbitrary: fc.constant('application/json') }, { weight: 1, arbitrary: fc.constantFrom('application/json; charset=utf-8', 'application/JSON') }, { weight: 1, arbitrary: contentType }),
    });
    await fuzz(t, arb, 1000, async ({ body: raw, skew, contentType: type }) => {
      const bytes = bytesOf(raw);
      const header = signatureHeader(secret, Math.floor(Date.now() / 1000) + skew, bytes);
      await probe({ method: 'POST', path: '/v1/webhooks/ycloud', tenant: null, headers: { 'Content-Type': type, 'YCloud-Signature': header }, body: bytes });
    });
  });

  test('random and malformed signature headers are refused', async (t) => {
    const { body } = webhookArbitraries();
    type Forge = { kind: string; mustRefuse: boolean; header: (bytes: Buffer, now: number) => string | undefined };
    const tsText = fc.oneof(fc.nat().map(String), fc.constantFrom('', '-1', '1e9', '9999999999999', '0x10', ' ', 'NaN'), fc.string({ maxLength: 14 }));
    const sigText = fc.oneof(hex(64), hex(63), hex(65), hex(64).map((h) => h.toUpperCase()), fc.string({ maxLength: 70 }));
    const forge: fc.Arbitrary<Forge> = fc.oneof(
      fc.constant<Forge>({ kind: 'missing', mustRefuse: true, header: () => undefined }),
      fc.oneof(fc.string({ maxLength: 100 }), fc.string({ unit: 'binary', maxLength: 40 }), headerValue).map<Forge>((s) => ({ kind: 'random', mustRefuse: true, header: () => s })),
      fc.constant<Forge>({ kind: 'wrong secret', mustRefuse: true, header: (bytes, now) => signatureHeader(`${secret}x`, now, bytes) }),
      fc.constant<Forge>({ kind: 'other body', mustRefuse: true, header: (bytes, now) => signatureHeader(secret, now, Buffer.concat([bytes, Buffer.from(' ')])) }),
      fc
        .oneof(fc.integer({ min: 301, max: 1_000_000_000 }), fc.integer({ min: -1_000_000_000, max: -301 }))
        .map<Forge>((skew) => ({ kind: `stale ${skew}`, mustRefuse: true, header: (bytes, now) => signatureHeader(secret, now + skew, bytes) })),
      fc.tuple(tsText, sigText).map<Forge>(([ts, sig]) => ({ kind: 'forged pair', mustRefuse: true, header: () => `t=${ts},s=${sig}` })),
      fc.constantFrom<Forge>(
        { kind: 'duplicate s', mustRefuse: true, header: (bytes, now) => `${signatureHeader(secret, now, bytes)},s=${'0'.repeat(64)}` },
        { kind: 'sha256=', mustRefuse: true, header: (bytes, now) => `sha256=${signatureHeader(secret, now, bytes).slice(-64)}` },
        { kind: 'only t', mustRefuse: true, header: (_bytes, now) => `t=${now}` },
        { kind: 'empty pair', mustRefuse: true, header: (bytes, now) => `${signatureHeader(secret, now, bytes)},` },
        { kind: 'swapped order', mustRefuse: false, header: (bytes, now) => signatureHeader(secret, now, bytes).split(',').reverse().join(',') },
        { kind: 'upper-case hex', mustRefuse: false, header: (bytes, now) => signatureHeader(secret, now, bytes).toUpperCase().replace('T=', 't=').replace('S=', 's=') },
        { kind: 'spaces', mustRefuse: false, header: (bytes, now) => signatureHeader(secret, now, bytes).replace(',', ' , ') },
      ),
    );
    await fuzz(t, fc.record({ body, forge }), 500, async ({ body: raw, forge: f }) => {
      const bytes = bytesOf(raw);
      const header = f.header(bytes, Math.floor(Date.now() / 1000));
      const req: Req = { method: 'POST', path: '/v1/webhooks/ycloud', tenant: null, headers: { 'Content-Type': 'application/json', 'YCloud-Signature': header }, body: bytes };
      const answer = await probe(req);
      // 401, or 413/415 when the body is refused before the signature is even looked at.
      if (answer !== undefined && f.mustRefuse) assert.ok(answer.status >= 400, `${f.kind}: a forged signature was accepted: ${describeReq(req)} → ${answer.status} ${answer.text}`);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 5. Authorization

describe('fuzz: Authorization header', () => {
  test('random Authorization values on every JSON endpoint', async (t) => {
    const keys = Object.values(TENANTS);
    const authorization = fc.oneof(
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 2, arbitrary: fc.string({ maxLength: 80 }) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
      { weight: 1, arbitrary: fc.string({ unit: latin1, maxLength: 20 }).map((s) => `Bearer ${s}`) },
      { weight: 2, arbitrary: fc.string({ maxLength: 80 }).map((s) => `Bearer ${s}`) },
      { weight: 2, arbitrary: fc.string({ unit: visibleAscii, minLength: 1, maxLength: 600 }).map((s) => `Bearer ${s}`) },
      {
        weight: 3,
        arbitrary: fc.tuple(fc.constantFrom(...keys), fc.nat({ max: 15 })).map(([key, variant]) =>
          [
            `bearer ${key}`, `Bearer  ${key}`, `Bearer ${key}x`, `Bearer ${key.slice(0, -1)}`, `Bearer\t${key}`, `Basic ${Buffer.from(`${key}:`).toString('base64')}`,
            `Bearer ${key},${key}`, `Token ${key}`, key, `Bearer ${key.toUpperCase()}`, `Bearer ${'a'.repeat(600)}`, `Bearer ${key}\u0000`, `Bearer ${key} `,
            ` Bearer ${key}`, `Bearer ${key}\r\n`, `Bearer ${key}\u00a0`,
          ][variant] ?? key,
        ),
      },
    );
    const endpoint = fc.constantFrom('create', 'get', 'check', 'resend', 'cancel', 'limits');
    await fuzz(t, fc.record({ authorization, endpoint }), 500, async ({ authorization: value, endpoint: which }) => {
      const id = idTargets[0]?.id ?? 'ver_000000000000';
      const req: Req =
        which === 'create'
          ? { method: 'POST', path: '/v1/verifications', body: '{"to":"nobody@example.com","purpose":"login"}' }
          : which === 'get'
            ? { method: 'GET', path: `/v1/verifications/${id}` }
            : which === 'limits'
              ? { method: 'GET', path: '/v1/limits?to=%2B6281234560000' }
              : { method: 'POST', path: `/v1/verifications/${id}/${which}`, body: which === 'check' ? '{"code":"000000"}' : '{}' };
      req.headers = { 'Content-Type': 'application/json', Authorization: value };
      req.tenant = null;
      const answer = await probe(req);
      if (answer === undefined) return;
      // What actually went on the wire (fetch trims surrounding whitespace).
      const sent = value === undefined ? undefined : new Headers({ Authorization: value }).get('authorization');
      const exact = keys.some((key) => sent === `Bearer ${key}`);
      if (!exact) {
        assert.equal(answer.status, 401, `accepted a non-exact Authorization ${JSON.stringify(sent)}: ${answer.text}`);
        assert.match(answer.headers.get('www-authenticate') ?? '', /^Bearer/);
      } else {
        assert.notEqual(answer.status, 401, `refused a valid key: ${answer.text}`);
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Known bug: broken Content-Encoding bodies

describe('fuzz: invalid compressed bodies', () => {
  test(
    'Content-Encoding gzip/deflate/br with bytes that do not decompress',
    async (t) => {
      const arb = fc.record({
        target: fc.constantFrom('create', 'check', 'resend', 'webhook'),
        encoding: fc.constantFrom('gzip', 'deflate', 'br'),
        body: fc.oneof(fc.string({ minLength: 1, maxLength: 100 }), fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.constant('{"to":"+6281234560000","purpose":"login"}')),
        truncate: fc.boolean(),
      });
      await fuzz(t, arb, 200, async ({ target, encoding, body, truncate }) => {
        const compressed = encodeBody(body, encoding === 'gzip' ? 'gzip' : encoding === 'deflate' ? 'deflate' : 'br').body;
        // Either the plain bytes labelled as compressed, or a real stream cut short.
        const bytes = truncate ? bytesOf(compressed).subarray(0, Math.max(1, Math.floor(bytesOf(compressed).length / 2))) : bytesOf(body);
        const id = idTargets[0]?.id ?? 'ver_000000000000';
        const headers: Record<string, string> = { 'Content-Type': 'application/json', 'Content-Encoding': encoding };
        if (target === 'webhook') {
          headers['YCloud-Signature'] = signatureHeader(secret, Math.floor(Date.now() / 1000), bytes);
          await probe({ method: 'POST', path: '/v1/webhooks/ycloud', tenant: null, headers, body: bytes });
        } else {
          await probe({ method: 'POST', path: target === 'create' ? '/v1/verifications' : `/v1/verifications/${id}/${target}`, headers, body: bytes });
        }
      });
    },
  );
});

// ---------------------------------------------------------------------------------------------
// After everything: the process, the prototypes and the workers survived

describe('after the fuzzing', () => {
  test('the process is up, prototypes are clean and the workers still deliver', async (t) => {
    t.diagnostic(
      `total: ${totals.cases} cases, ${totals.sent} requests answered, ${totals.refusedByFetch} refused by fetch before sending`,
    );

    const health = await fetch(`${k.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });

    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(([] as unknown as Record<string, unknown>).polluted, undefined);
    assert.equal((Object.create(null) as Record<string, unknown>).polluted, undefined);
    for (const [name, proto] of PROTOTYPES) {
      const before = protoSnapshots.get(proto) ?? new Map<string | symbol, unknown>();
      const now = ownSnapshot(proto);
      const added = [...now.keys()].filter((key) => !before.has(key)).map(String);
      const changed = [...before.keys()].filter((key) => now.get(key) !== before.get(key)).map(String);
      assert.deepEqual(added, [], `${name} gained own keys`);
      assert.deepEqual(changed, [], `${name} had own keys replaced`);
    }
    assert.deepEqual(processProblems, []);

    // Receipt jobs from signed hostile webhooks that the worker could not process (diagnostic).
    const receipts = k.kurir.services.queues.queue('receipts');
    const counts = await receipts.getJobCounts('failed', 'delayed', 'waiting', 'active', 'completed');
    const failed = await receipts.getFailed(0, 5);
    t.diagnostic(`receipts queue: ${JSON.stringify(counts)}${failed.length > 0 ? ` failed reasons: ${failed.map((job) => job.failedReason).join(' | ')}` : ''}`);

    // Error-level log lines of every role during the run, grouped.
    const errors = new Map<string, number>();
    for (const line of k.logs) {
      const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
      if ((entry.level ?? 0) < 50) continue;
      const label = `${entry.msg ?? ''}${entry.err?.message === undefined ? '' : `: ${entry.err.message.slice(0, 100)}`}`;
      errors.set(label, (errors.get(label) ?? 0) + 1);
    }
    t.diagnostic(`error log lines: ${errors.size === 0 ? 'none' : [...errors].map(([label, n]) => `${n}× ${label}`).join(' | ')}`);

    // One ordinary verification, end to end. A 429 from the tenant's per-second limit just waits.
    const to = `fuzz-final-${randomUUID()}@example.com`;
    let created = await k.create({ to, purpose: 'login' });
    for (let attempt = 0; attempt < 5 && created.status === 429; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 1100));
      created = await k.create({ to, purpose: 'login' });
    }
    assert.equal(created.status, 202, created.text);
    const id = String(created.body.id);
    const done = await k.waitFor(id, (v) => v.deliveries[0]?.status === 'delivered', 20_000);
    assert.equal(done.deliveries[0]?.channel, 'email');
  });
});
