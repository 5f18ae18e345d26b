import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';

import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';

import type { OutboundMessage } from '../../common/providers/provider.js';
import { createYCloudProvider, parseReceipt } from '../../common/providers/ycloud/ycloud.provider.js';

/**
 * Contract test: the bodies the YCloud adapter really puts on the wire, and the webhook events it
 * understands, checked against YCloud's own OpenAPI spec (`shared/reference`, outside the repo).
 *
 * The spec leaves `additionalProperties` open everywhere, so a misspelled optional field
 * (`sub_typ`, `externalID`) would pass it silently. Request bodies are therefore also checked
 * against a "closed" copy where every object schema in the request subtree rejects unknown keys.
 */

const SPEC_URL = new URL('../../../shared/reference/ycloud-openapi-v2.yaml', import.meta.url);
const LOOSE_ID = 'https://spec.kurir.test/ycloud-openapi-v2.json';
const CLOSED_ID = 'https://spec.kurir.test/ycloud-openapi-v2-closed.json';

const REQUEST_SCHEMAS = ['WhatsappMessageSendRequest', 'SmsSendRequest', 'EmailSendRequest'] as const;
type RequestSchema = (typeof REQUEST_SCHEMAS)[number];

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

interface SpecValidators {
  loose: Record<RequestSchema | 'Event', ValidateFunction>;
  closed: Record<RequestSchema, ValidateFunction>;
  /** Names of the component schemas the closed copy tightened. */
  closedSchemas: ReadonlySet<string>;
}

const COMPOSITIONS = ['allOf', 'oneOf', 'anyOf'] as const;

/**
 * Adds `additionalProperties: false` to every object schema reachable from `roots` that lists
 * `properties` and says nothing about extra keys. Left open on purpose: schemas that combine with
 * others (members of `allOf`/`oneOf`/`anyOf`, or holding one), because there the allowed keys are
 * spread over several schemas and closing one part would reject the others' keys.
 */
function closeRequestSubtree(doc: JsonObject, roots: readonly string[]): Set<string> {
  const components = doc['components'];
  const schemas = isObject(components) ? components['schemas'] : undefined;
  assert.ok(isObject(schemas), 'spec has no components.schemas');

  const refName = (node: JsonObject): string | undefined => {
    const ref = node['$ref'];
    return typeof ref === 'string' && ref.startsWith('#/components/schemas/') ? ref.slice('#/components/schemas/'.length) : undefined;
  };

  // A named schema used as a composition member anywhere keeps its extra keys open everywhere.
  const composedNames = new Set<string>();
  const collectComposed = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(collectComposed);
    if (!isObject(node)) return;
    for (const keyword of COMPOSITIONS) {
      const members = node[keyword];
      if (!Array.isArray(members)) continue;
      for (const member of members) {
        const name = isObject(member) ? refName(member) : undefined;
        if (name !== undefined) composedNames.add(name);
      }
    }
    Object.values(node).forEach(collectComposed);
  };
  collectComposed(schemas);

  const visitedNames = new Set<string>();
  const closedNames = new Set<string>();

  // Walks schema positions only (not `example` values, not property-name maps themselves).
  const visit = (node: unknown, closable: boolean, owner: string): void => {
    if (!isObject(node)) return;
    const name = refName(node);
    if (name !== undefined) {
      if (visitedNames.has(name)) return;
      visitedNames.add(name);
      visit(schemas[name], !composedNames.has(name), name);
      return;
    }
    const composed = COMPOSITIONS.some((keyword) => keyword in node);
    if (closable && !composed && isObject(node['properties']) && !('additionalProperties' in node)) {
      node['additionalProperties'] = false;
      closedNames.add(owner);
    }
    const properties = node['properties'];
    if (isObject(properties)) for (const child of Object.values(properties)) visit(child, true, owner);
    const items = node['items'];
    if (Array.isArray(items)) items.forEach((item) => visit(item, true, owner));
    else visit(items, true, owner);
    visit(node['additionalProperties'], true, owner);
    visit(node['not'], false, owner);
    for (const keyword of COMPOSITIONS) {
      const members = node[keyword];
      if (Array.isArray(members)) members.forEach((member) => visit(member, false, owner));
    }
  };
  for (const root of roots) visit({ $ref: `#/components/schemas/${root}` }, true, root);
  return closedNames;
}

let cached: SpecValidators | undefined;

/**
 * Parses the 1.8 MB spec and compiles the validators once per test file. The document is added
 * unchanged: Ajv ignores `example`/`x-*` under `strict: false` and knows OpenAPI's `nullable`,
 * and ajv-formats covers `int32`/`double`/`date-time`, so nothing needs stripping.
 */
function loadValidators(): SpecValidators {
  if (cached !== undefined) return cached;
  const parsed: unknown = parse(readFileSync(SPEC_URL, 'utf8'));
  assert.ok(isObject(parsed), 'spec is not a YAML mapping');
  const closedDoc = structuredClone(parsed);
  const closedSchemas = closeRequestSubtree(closedDoc, REQUEST_SCHEMAS);

  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema({ ...parsed, $id: LOOSE_ID });
  ajv.addSchema({ ...closedDoc, $id: CLOSED_ID });
  const compile = (id: string, name: string): ValidateFunction => ajv.compile({ $ref: `${id}#/components/schemas/${name}` });

  cached = {
    loose: {
      WhatsappMessageSendRequest: compile(LOOSE_ID, 'WhatsappMessageSendRequest'),
      SmsSendRequest: compile(LOOSE_ID, 'SmsSendRequest'),
      EmailSendRequest: compile(LOOSE_ID, 'EmailSendRequest'),
      Event: compile(LOOSE_ID, 'Event'),
    },
    closed: {
      WhatsappMessageSendRequest: compile(CLOSED_ID, 'WhatsappMessageSendRequest'),
      SmsSendRequest: compile(CLOSED_ID, 'SmsSendRequest'),
      EmailSendRequest: compile(CLOSED_ID, 'EmailSendRequest'),
    },
    closedSchemas,
  };
  return cached;
}

/** The spec lives beside the repo, not in it: without it the tests say so instead of failing. */
function validatorsOrSkip(t: TestContext): SpecValidators | undefined {
  if (!existsSync(SPEC_URL)) {
    t.skip('YCloud OpenAPI spec not found: shared/reference folder absent');
    return undefined;
  }
  return loadValidators();
}

function assertValid(validate: ValidateFunction, value: unknown, label: string): void {
  const ok = validate(value);
  assert.ok(ok, `${label}: ${JSON.stringify(validate.errors, null, 2)}`);
}

function assertInvalid(validate: ValidateFunction, value: unknown, label: string): void {
  assert.equal(validate(value), false, `${label} should have been rejected`);
}

// ---------------------------------------------------------------------------------------------
// Capturing what the adapter sends, over real HTTP.

const messages: Record<'whatsapp' | 'sms' | 'email', OutboundMessage> = {
  whatsapp: {
    channel: 'whatsapp',
    to: '+5511999990000',
    externalId: 'ver_01-1',
    templateName: 'otp_copy_code',
    templateLanguage: 'pt_BR',
    code: '482913',
  },
  sms: { channel: 'sms', to: '+6281234567890', externalId: 'ver_01-2', text: '482913 is your Kurir code.' },
  email: {
    channel: 'email',
    to: 'ana@example.com',
    externalId: 'ver_01-3',
    subject: 'Your code',
    text: '482913 is your code.',
    html: '<p><b>482913</b> is your code.</p>',
  },
};

/** Sends one message through the adapter to a local server and returns the parsed body it got. */
async function captureBody(message: OutboundMessage, smsSenderId?: string): Promise<JsonObject> {
  let body: string | undefined;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      body = Buffer.concat(chunks).toString('utf8');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ id: 'msg_000001', wabaId: 'waba_1', from: '+15550001000', to: message.to, status: 'accepted' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await createYCloudProvider({
      baseUrl: `http://127.0.0.1:${port}/v2`,
      apiKey: 'test-api-key',
      whatsappFrom: '+15550001000',
      smsSenderId,
      emailFrom: 'Kurir<no-reply@kurir.example>',
      timeoutMs: 2_000,
    }).send(message);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  assert.ok(body !== undefined, 'the adapter sent nothing');
  const parsed: unknown = JSON.parse(body);
  assert.ok(isObject(parsed));
  return parsed;
}

const sendCases: { label: string; schema: RequestSchema; message: OutboundMessage; smsSenderId?: string }[] = [
  { label: 'WhatsApp template', schema: 'WhatsappMessageSendRequest', message: messages.whatsapp },
  { label: 'SMS with sender id', schema: 'SmsSendRequest', message: messages.sms, smsSenderId: 'Kurir' },
  { label: 'SMS without sender id', schema: 'SmsSendRequest', message: messages.sms },
  { label: 'email', schema: 'EmailSendRequest', message: messages.email },
];

describe('YCloud request bodies match the OpenAPI spec', () => {
  for (const row of sendCases) {
    test(`${row.label} body validates against ${row.schema}, also with unknown keys rejected`, async (t) => {
      const validators = validatorsOrSkip(t);
      if (validators === undefined) return;
      const body = await captureBody(row.message, row.smsSenderId);
      assertValid(validators.loose[row.schema], body, `${row.label} (spec)`);
      assertValid(validators.closed[row.schema], body, `${row.label} (closed spec)`);
    });
  }

  test('the closed copy tightened the whole template subtree', (t) => {
    const validators = validatorsOrSkip(t);
    if (validators === undefined) return;
    for (const name of [
      'WhatsappMessageSendRequest',
      'WhatsappMessageTemplate',
      'WhatsappMessageTemplate_language',
      'WhatsappMessageTemplateComponent',
      'WhatsappMessageTemplateComponentParameter',
      'SmsSendRequest',
      'EmailSendRequest',
    ]) {
      assert.ok(validators.closedSchemas.has(name), `${name} was not closed`);
    }
  });

  test('a misspelled field passes the spec but fails the closed copy', async (t) => {
    const validators = validatorsOrSkip(t);
    if (validators === undefined) return;
    const body = await captureBody(messages.whatsapp);
    const template = body['template'];
    assert.ok(isObject(template) && Array.isArray(template['components']));
    const button: unknown = template['components'][1];
    assert.ok(isObject(button) && 'sub_type' in button);
    button['sub_typ'] = button['sub_type'];
    delete button['sub_type'];
    assertValid(validators.loose.WhatsappMessageSendRequest, body, 'typo body (spec is open)');
    assertInvalid(validators.closed.WhatsappMessageSendRequest, body, 'button with sub_typ');

    const sms = await captureBody(messages.sms, 'Kurir');
    sms['externalID'] = sms['externalId'];
    delete sms['externalId'];
    assertInvalid(validators.closed.SmsSendRequest, sms, 'SMS with externalID');
  });

  test('the button index as the string "0" (as in YCloud examples) is rejected by the spec', (t) => {
    const validators = validatorsOrSkip(t);
    if (validators === undefined) return;
    const body = {
      from: '+15550001000',
      to: '+5511999990000',
      type: 'template',
      template: {
        name: 'otp_copy_code',
        language: { code: 'en_US', policy: 'deterministic' },
        components: [{ type: 'button', sub_type: 'url', index: '0', parameters: [{ type: 'text', text: '1' }] }],
      },
    };
    assertInvalid(validators.loose.WhatsappMessageSendRequest, body, 'string index');
  });
});

// ---------------------------------------------------------------------------------------------

const createTime = '2026-03-01T10:00:05.000Z';

const eventCases: { label: string; event: JsonObject; receipt: ReturnType<typeof parseReceipt> }[] = [
  {
    label: 'WhatsApp failed with a Meta error',
    event: {
      id: 'evt_wa000001',
      type: 'whatsapp.message.updated',
      apiVersion: 'v2',
      createTime,
      whatsappMessage: {
        id: '63f5d602367ea403f8175a6c',
        wamid: 'wamid.HBgNNTUxMTk5OTk5MDAwMBUCABEYEjA',
        wabaId: 'waba_1',
        from: '+15550001000',
        to: '+5511999990000',
        type: 'template',
        status: 'failed',
        errorCode: '131026',
        errorMessage: 'Message undeliverable',
        whatsappApiError: { code: '131026', message: 'Message undeliverable', type: 'OAuthException' },
        externalId: 'ver_01-1',
        createTime: '2026-03-01T10:00:00.000Z',
        updateTime: '2026-03-01T10:00:04.000Z',
        pricingCategory: 'authentication',
      },
    },
    receipt: {
      channel: 'whatsapp',
      providerMessageId: '63f5d602367ea403f8175a6c',
      externalId: 'ver_01-1',
      status: 'failed',
      errorCode: '131026',
      occurredAt: Date.parse('2026-03-01T10:00:04.000Z'),
    },
  },
  {
    label: 'WhatsApp read',
    event: {
      id: 'evt_wa000002',
      type: 'whatsapp.message.updated',
      apiVersion: 'v2',
      createTime,
      whatsappMessage: {
        id: '63f5d602367ea403f8175a6c',
        wabaId: 'waba_1',
        from: '+15550001000',
        to: '+5511999990000',
        status: 'read',
        externalId: 'ver_01-1',
        sendTime: '2026-03-01T10:00:01.000Z',
        deliverTime: '2026-03-01T10:00:02.000Z',
        readTime: '2026-03-01T10:00:03.000Z',
      },
    },
    receipt: {
      channel: 'whatsapp',
      providerMessageId: '63f5d602367ea403f8175a6c',
      externalId: 'ver_01-1',
      status: 'read',
      errorCode: undefined,
      occurredAt: Date.parse('2026-03-01T10:00:03.000Z'),
    },
  },
  {
    label: 'SMS undelivered',
    event: {
      id: 'evt_sms00001',
      type: 'sms.message.updated',
      apiVersion: 'v2',
      createTime,
      sms: {
        id: 'sms_000001',
        to: '+6281234567890',
        status: 'undelivered',
        errorCode: 'UNDELIVERABLE',
        externalId: 'ver_01-2',
        totalSegments: 1,
        updateTime: '2026-03-01T10:00:01.000Z',
      },
    },
    receipt: {
      channel: 'sms',
      providerMessageId: 'sms_000001',
      externalId: 'ver_01-2',
      status: 'failed',
      errorCode: 'UNDELIVERABLE',
      occurredAt: Date.parse('2026-03-01T10:00:01.000Z'),
    },
  },
  {
    label: 'email sending',
    event: {
      id: 'evt_em000001',
      type: 'email.delivery.updated',
      apiVersion: 'v2',
      createTime,
      emailDelivery: { emailId: 'email_000001', recipientAddress: 'ana@example.com', status: 'sending', externalId: 'ver_01-3' },
    },
    receipt: {
      channel: 'email',
      providerMessageId: 'email_000001',
      externalId: 'ver_01-3',
      status: 'accepted',
      errorCode: undefined,
      occurredAt: Date.parse(createTime),
    },
  },
  {
    label: 'template review (not a delivery)',
    event: {
      id: 'evt_tp000001',
      type: 'whatsapp.template.reviewed',
      apiVersion: 'v2',
      createTime,
      whatsappTemplate: { wabaId: 'waba_1', name: 'otp_copy_code', language: 'en_US', category: 'AUTHENTICATION', status: 'APPROVED' },
    },
    receipt: null,
  },
];

describe('YCloud webhook events match the OpenAPI spec', () => {
  for (const row of eventCases) {
    test(`${row.label}: a valid Event, parsed as expected`, (t) => {
      const validators = validatorsOrSkip(t);
      if (validators === undefined) return;
      assertValid(validators.loose.Event, row.event, row.label);
      assert.deepEqual(parseReceipt(row.event), row.receipt);
    });
  }

  test('a status outside the spec enum fails Event and parses to null', (t) => {
    const validators = validatorsOrSkip(t);
    if (validators === undefined) return;
    const event = {
      id: 'evt_wa000003',
      type: 'whatsapp.message.updated',
      apiVersion: 'v2',
      createTime,
      whatsappMessage: { id: '63f5d602367ea403f8175a6c', wabaId: 'waba_1', from: '+15550001000', status: 'deleted' },
    };
    assertInvalid(validators.loose.Event, event, 'unknown status');
    assert.equal(parseReceipt(event), null);
  });
});
