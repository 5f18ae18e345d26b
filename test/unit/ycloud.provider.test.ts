import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { HttpAbortedError, HttpTimeoutError, type HttpTransport } from '../../common/http/keep-alive-transport.js';

import {
  ProviderError,
  type EmailMessage,
  type MessagingProvider,
  type OutboundMessage,
  type SmsMessage,
  type WhatsAppOtpMessage,
} from '../../common/providers/provider.js';
import {
  classifyTransportFailure,
  classifyHttpError,
  classifyMetaCode,
  parseErrorBody,
  parseRetryAfter,
  type HttpFailure,
} from '../../common/providers/ycloud/ycloud-errors.js';
import {
  createYCloudProvider,
  parseReceipt,
  type YCloudProviderOptions,
} from '../../common/providers/ycloud/ycloud.provider.js';

const API_KEY = 'test-api-key-7f3a';
const CODE = '482913';

const whatsappMessage: WhatsAppOtpMessage = {
  channel: 'whatsapp',
  to: '+5511999990000',
  externalId: 'ver_01-1',
  templateName: 'otp_copy_code',
  templateLanguage: 'pt_BR',
  code: CODE,
};

const smsMessage: SmsMessage = {
  channel: 'sms',
  to: '+6281234567890',
  externalId: 'ver_01-2',
  text: `${CODE} is your Kurir code.`,
};

const emailMessage: EmailMessage = {
  channel: 'email',
  to: 'ana@example.com',
  externalId: 'ver_01-3',
  subject: 'Your code',
  text: `${CODE} is your code.`,
  html: `<p><b>${CODE}</b> is your code.</p>`,
};

// ---------------------------------------------------------------------------------------------
// A local stand-in for api.ycloud.com: records every request, answers with a scripted reply.

interface CapturedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** `hang` never answers; `stall` sends headers and half a body, then stops. */
type Reply = { status: number; headers?: Record<string, string>; body?: string } | 'hang' | 'stall';

interface FakeYCloud {
  baseUrl: string;
  requests: CapturedRequest[];
}

async function withFakeYCloud(
  reply: (request: CapturedRequest) => Reply,
  run: (server: FakeYCloud) => Promise<void>,
): Promise<void> {
  const requests: CapturedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const captured: CapturedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(captured);
      const answer = reply(captured);
      if (answer === 'hang') return;
      if (answer === 'stall') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"id":');
        return;
      }
      res.writeHead(answer.status, { 'Content-Type': 'application/json', ...answer.headers });
      res.end(answer.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    await run({ baseUrl: `http://127.0.0.1:${port}/v2`, requests });
  } finally {
    // Hung replies keep sockets open; close them so the test process never waits on them.
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function json(status: number, body: unknown, headers?: Record<string, string>): Reply {
  return { status, body: JSON.stringify(body), ...(headers === undefined ? {} : { headers }) };
}

function provider(baseUrl: string, overrides: Partial<YCloudProviderOptions> = {}): MessagingProvider {
  return createYCloudProvider({
    baseUrl,
    apiKey: API_KEY,
    whatsappFrom: '+15550001000',
    smsSenderId: 'Kurir',
    emailFrom: 'Kurir<no-reply@kurir.example>',
    timeoutMs: 2_000,
    ...overrides,
  });
}

async function sendFails(
  p: MessagingProvider,
  message: OutboundMessage,
  options?: { signal?: AbortSignal },
): Promise<ProviderError> {
  try {
    await p.send(message, options);
  } catch (error) {
    assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
    // The OTP travels in every request body; it must never surface in an error message.
    assert.ok(!error.message.includes(CODE), `error message leaks the code: ${error.message}`);
    assert.ok(!error.message.includes(API_KEY), `error message leaks the API key: ${error.message}`);
    return error;
  }
  assert.fail('send should have failed');
}

function onlyRequest(server: FakeYCloud): CapturedRequest {
  assert.equal(server.requests.length, 1);
  const [request] = server.requests;
  assert.ok(request !== undefined);
  return request;
}

/** An error envelope whose message quotes what we sent, as a careless vendor message might. */
function ycloudError(status: number, code: string, whatsappApiError?: Record<string, unknown>): unknown {
  return {
    error: {
      status,
      code,
      message: `Invalid parameter: text "${CODE}"`,
      requestId: 'req_1KjtKI80IKoaJNa6n6p',
      ...(whatsappApiError === undefined ? {} : { whatsappApiError }),
    },
  };
}

// ---------------------------------------------------------------------------------------------

describe('YCloud send: wire format', () => {
  test('WhatsApp goes to sendDirectly as an authentication template with the code in body and button', async () => {
    await withFakeYCloud(
      () => json(200, { id: '63f5d602367ea403f8175a6c', wabaId: 'waba_1', from: '+15550001000', status: 'accepted' }),
      async (server) => {
        const result = await provider(server.baseUrl).send(whatsappMessage);
        assert.deepEqual(result, { providerMessageId: '63f5d602367ea403f8175a6c', status: 'accepted' });

        const request = onlyRequest(server);
        assert.equal(request.method, 'POST');
        assert.equal(request.path, '/v2/whatsapp/messages/sendDirectly');
        assert.equal(request.headers['x-api-key'], API_KEY);
        assert.equal(request.headers['content-type'], 'application/json');
        assert.equal(request.headers['accept'], 'application/json');
        assert.deepEqual(JSON.parse(request.body), {
          from: '+15550001000',
          to: '+5511999990000',
          type: 'template',
          externalId: 'ver_01-1',
          template: {
            name: 'otp_copy_code',
            language: { code: 'pt_BR', policy: 'deterministic' },
            components: [
              { type: 'body', parameters: [{ type: 'text', text: CODE }] },
              { type: 'button', sub_type: 'url', index: 0, parameters: [{ type: 'text', text: CODE }] },
            ],
          },
        });
      },
    );
  });

  test('SMS goes to /sms with the sender id', async () => {
    await withFakeYCloud(
      () => json(200, { id: 'sms_000001', to: smsMessage.to, status: 'accepted' }),
      async (server) => {
        const result = await provider(server.baseUrl).send(smsMessage);
        assert.deepEqual(result, { providerMessageId: 'sms_000001', status: 'accepted' });

        const request = onlyRequest(server);
        assert.equal(request.method, 'POST');
        assert.equal(request.path, '/v2/sms');
        assert.equal(request.headers['x-api-key'], API_KEY);
        assert.deepEqual(JSON.parse(request.body), {
          to: '+6281234567890',
          text: `${CODE} is your Kurir code.`,
          externalId: 'ver_01-2',
          senderId: 'Kurir',
        });
      },
    );
  });

  test('SMS leaves senderId out entirely when none is configured', async () => {
    await withFakeYCloud(
      () => json(200, { id: 'sms_000002', to: smsMessage.to, status: 'sent' }),
      async (server) => {
        const result = await provider(server.baseUrl, { smsSenderId: undefined }).send(smsMessage);
        assert.equal(result.status, 'sent');
        const body: unknown = JSON.parse(onlyRequest(server).body);
        assert.deepEqual(body, { to: '+6281234567890', text: `${CODE} is your Kurir code.`, externalId: 'ver_01-2' });
      },
    );
  });

  test('email goes to /emails with the HTML part as content', async () => {
    await withFakeYCloud(
      // The Email object has no status field in the spec: a bare id means accepted.
      () => json(200, { id: 'email_000001' }),
      async (server) => {
        const result = await provider(server.baseUrl).send(emailMessage);
        assert.deepEqual(result, { providerMessageId: 'email_000001', status: 'accepted' });

        const request = onlyRequest(server);
        assert.equal(request.method, 'POST');
        assert.equal(request.path, '/v2/emails');
        assert.equal(request.headers['x-api-key'], API_KEY);
        assert.deepEqual(JSON.parse(request.body), {
          from: 'Kurir<no-reply@kurir.example>',
          to: 'ana@example.com',
          subject: 'Your code',
          content: `<p><b>${CODE}</b> is your code.</p>`,
          contentType: 'text/html',
          externalId: 'ver_01-3',
        });
      },
    );
  });

  test('a trailing slash on baseUrl does not double the separator', async () => {
    await withFakeYCloud(
      () => json(200, { id: 'sms_000003' }),
      async (server) => {
        await provider(`${server.baseUrl}/`).send(smsMessage);
        assert.equal(onlyRequest(server).path, '/v2/sms');
      },
    );
  });

  const statusRows: { vendor: string | undefined; ours: string }[] = [
    { vendor: 'accepted', ours: 'accepted' },
    { vendor: 'sending', ours: 'accepted' },
    { vendor: 'sent', ours: 'sent' },
    { vendor: 'delivered', ours: 'delivered' },
    { vendor: undefined, ours: 'accepted' },
    // A status YCloud adds later must not break a send that was taken.
    { vendor: 'queued_somewhere_new', ours: 'accepted' },
  ];
  for (const row of statusRows) {
    test(`synchronous status ${String(row.vendor)} → ${row.ours}`, async () => {
      await withFakeYCloud(
        () => json(200, { id: 'email_000002', ...(row.vendor === undefined ? {} : { status: row.vendor }) }),
        async (server) => {
          const result = await provider(server.baseUrl).send(emailMessage);
          assert.equal(result.status, row.ours);
        },
      );
    });
  }
});

describe('YCloud send: failures', () => {
  test('Meta 131026 → permanent, notOnWhatsApp, code whatsapp_131026', async () => {
    await withFakeYCloud(
      () =>
        json(
          400,
          ycloudError(400, 'WHATSAPP_API_ERROR', {
            code: '131026',
            type: 'OAuthException',
            message: 'Message undeliverable',
          }),
        ),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), whatsappMessage);
        assert.equal(error.kind, 'permanent');
        assert.equal(error.code, 'whatsapp_131026');
        assert.equal(error.notOnWhatsApp, true);
        assert.equal(error.httpStatus, 400);
        assert.equal(error.retryable, false);
        assert.match(error.message, /req_1KjtKI80IKoaJNa6n6p/);
      },
    );
  });

  test('WhatsApp decides on the Meta code, not on YCloud error.code', async () => {
    await withFakeYCloud(
      () => json(400, ycloudError(400, 'PARAM_INVALID', { code: 131056, message: 'pair rate limit hit' })),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), whatsappMessage);
        assert.equal(error.kind, 'rate_limited');
        assert.equal(error.code, 'whatsapp_131056');
        assert.equal(error.notOnWhatsApp, false);
      },
    );
  });

  test('429 with Retry-After seconds → rate_limited with retryAfterSeconds', async () => {
    await withFakeYCloud(
      () => json(429, ycloudError(429, 'SENDER_RATE_LIMITED'), { 'Retry-After': '7' }),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), smsMessage);
        assert.equal(error.kind, 'rate_limited');
        assert.equal(error.code, 'SENDER_RATE_LIMITED');
        assert.equal(error.retryAfterSeconds, 7);
        assert.equal(error.httpStatus, 429);
      },
    );
  });

  test('503 → transient with the YCloud code', async () => {
    await withFakeYCloud(
      () => json(503, ycloudError(503, 'SERVICE_UNAVAILABLE')),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), whatsappMessage);
        assert.equal(error.kind, 'transient');
        assert.equal(error.code, 'SERVICE_UNAVAILABLE');
        assert.equal(error.retryable, true);
      },
    );
  });

  test('502 with an HTML body → transient http_502', async () => {
    await withFakeYCloud(
      () => ({ status: 502, headers: { 'Content-Type': 'text/html' }, body: '<html><h1>Bad Gateway</h1></html>' }),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), smsMessage);
        assert.equal(error.kind, 'transient');
        assert.equal(error.code, 'http_502');
        assert.equal(error.httpStatus, 502);
      },
    );
  });

  test('400 PARAM_INVALID → permanent PARAM_INVALID', async () => {
    await withFakeYCloud(
      () => json(400, ycloudError(400, 'PARAM_INVALID')),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), smsMessage);
        assert.equal(error.kind, 'permanent');
        assert.equal(error.code, 'PARAM_INVALID');
        assert.equal(error.notOnWhatsApp, false);
      },
    );
  });

  test('401 UNAUTHORIZED → permanent, and the request id comes from the header when the body has none', async () => {
    await withFakeYCloud(
      () => json(401, { error: { status: 401, code: 'UNAUTHORIZED' } }, { 'YCloud-Request-ID': 'req_fromHeader01' }),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), emailMessage);
        assert.equal(error.kind, 'permanent');
        assert.equal(error.code, 'UNAUTHORIZED');
        assert.match(error.message, /req_fromHeader01/);
      },
    );
  });

  test('a 2xx without an id → transient invalid_response', async () => {
    await withFakeYCloud(
      () => json(200, { status: 'accepted' }),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), whatsappMessage);
        assert.equal(error.kind, 'transient');
        assert.equal(error.code, 'invalid_response');
      },
    );
  });

  test('a 2xx that is not JSON → transient invalid_response', async () => {
    await withFakeYCloud(
      () => ({ status: 200, headers: { 'Content-Type': 'text/html' }, body: '<html>captive portal</html>' }),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), smsMessage);
        assert.equal(error.code, 'invalid_response');
        assert.equal(error.kind, 'transient');
      },
    );
  });

  test('a 2xx whose message is already failed with a Meta code is classified like an error', async () => {
    await withFakeYCloud(
      () =>
        json(200, {
          id: '63f5d602367ea403f8175a6d',
          wabaId: 'waba_1',
          from: '+15550001000',
          status: 'failed',
          errorCode: '131026',
          whatsappApiError: { code: '131026', message: 'Message undeliverable' },
        }),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), whatsappMessage);
        assert.equal(error.kind, 'permanent');
        assert.equal(error.code, 'whatsapp_131026');
        assert.equal(error.notOnWhatsApp, true);
      },
    );
  });

  test('no answer within timeoutMs → transient timeout', async () => {
    await withFakeYCloud(
      () => 'hang',
      async (server) => {
        const error = await sendFails(provider(server.baseUrl, { timeoutMs: 50 }), whatsappMessage);
        assert.equal(error.kind, 'transient');
        assert.equal(error.code, 'timeout');
      },
    );
  });

  test('headers sent but the body stalls → still a timeout', async () => {
    await withFakeYCloud(
      () => 'stall',
      async (server) => {
        const error = await sendFails(provider(server.baseUrl, { timeoutMs: 50 }), smsMessage);
        assert.equal(error.code, 'timeout');
      },
    );
  });

  test("the caller's signal aborting → transient aborted", async () => {
    const controller = new AbortController();
    await withFakeYCloud(
      () => {
        // Abort once the request has reached the server, so it is an in-flight abort.
        controller.abort();
        return 'hang';
      },
      async (server) => {
        const error = await sendFails(provider(server.baseUrl, { timeoutMs: 5_000 }), smsMessage, {
          signal: controller.signal,
        });
        assert.equal(error.kind, 'transient');
        assert.equal(error.code, 'aborted');
      },
    );
  });

  test('an already-aborted caller signal → aborted without a request', async () => {
    await withFakeYCloud(
      () => json(200, { id: 'sms_000009' }),
      async (server) => {
        const error = await sendFails(provider(server.baseUrl), smsMessage, { signal: AbortSignal.abort() });
        assert.equal(error.code, 'aborted');
        assert.equal(server.requests.length, 0);
      },
    );
  });

  test('a socket error (refused, DNS, reset) → transient network', async () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const failing: HttpTransport = () => Promise.reject(reset);
    const error = await sendFails(provider('http://127.0.0.1:9/v2', { transport: failing }), emailMessage);
    assert.equal(error.kind, 'transient');
    assert.equal(error.code, 'network');
    assert.equal(error.cause, reset);
  });
});

describe('YCloud error classification table', () => {
  const nowMs = Date.parse('2026-01-01T00:00:00Z');
  const envelope = (status: number, code: string, metaCode?: string | number): string =>
    JSON.stringify({
      error: { status, code, ...(metaCode === undefined ? {} : { whatsappApiError: { code: metaCode, message: 'x' } }) },
    });
  const failure = (overrides: Partial<HttpFailure> & Pick<HttpFailure, 'httpStatus' | 'bodyText'>): HttpFailure => ({
    channel: 'sms',
    nowMs,
    ...overrides,
  });

  const rows: {
    name: string;
    input: HttpFailure;
    kind: ProviderError['kind'];
    code: string;
    notOnWhatsApp?: boolean;
    retryAfterSeconds?: number;
  }[] = [
    {
      name: '429 ACCOUNT_RATE_LIMITED, Retry-After as HTTP date',
      input: failure({
        httpStatus: 429,
        bodyText: envelope(429, 'ACCOUNT_RATE_LIMITED'),
        retryAfterHeader: 'Thu, 01 Jan 2026 00:00:30 GMT',
      }),
      kind: 'rate_limited',
      code: 'ACCOUNT_RATE_LIMITED',
      retryAfterSeconds: 30,
    },
    {
      name: '429 TOO_MANY_REQUESTS without Retry-After',
      input: failure({ httpStatus: 429, bodyText: envelope(429, 'TOO_MANY_REQUESTS') }),
      kind: 'rate_limited',
      code: 'TOO_MANY_REQUESTS',
    },
    {
      name: '429 with an empty body',
      input: failure({ httpStatus: 429, bodyText: '', retryAfterHeader: '3' }),
      kind: 'rate_limited',
      code: 'http_429',
      retryAfterSeconds: 3,
    },
    {
      name: '500 INTERNAL_SERVER_ERROR',
      input: failure({ httpStatus: 500, bodyText: envelope(500, 'INTERNAL_SERVER_ERROR') }),
      kind: 'transient',
      code: 'INTERNAL_SERVER_ERROR',
    },
    { name: '504 without body', input: failure({ httpStatus: 504, bodyText: '' }), kind: 'transient', code: 'http_504' },
    { name: '408', input: failure({ httpStatus: 408, bodyText: '' }), kind: 'transient', code: 'http_408' },
    {
      name: '403 BALANCE_INSUFFICIENT',
      input: failure({ httpStatus: 403, bodyText: envelope(403, 'BALANCE_INSUFFICIENT') }),
      kind: 'permanent',
      code: 'BALANCE_INSUFFICIENT',
    },
    {
      name: '403 RECIPIENT_IN_BLOCK_LIST',
      input: failure({ httpStatus: 403, bodyText: envelope(403, 'RECIPIENT_IN_BLOCK_LIST') }),
      kind: 'permanent',
      code: 'RECIPIENT_IN_BLOCK_LIST',
    },
    {
      name: '404 with a truncated JSON body',
      input: failure({ httpStatus: 404, bodyText: '{"error":{"status":404,' }),
      kind: 'permanent',
      code: 'http_404',
    },
    {
      name: 'a vendor code that is not identifier-like is not passed through',
      input: failure({ httpStatus: 400, bodyText: envelope(400, 'bad code with spaces and 482913') }),
      kind: 'permanent',
      code: 'http_400',
    },
    {
      name: 'WhatsApp 403 WHATSAPP_TEMPLATE_UNAVAILABLE without a Meta error',
      input: failure({ channel: 'whatsapp', httpStatus: 403, bodyText: envelope(403, 'WHATSAPP_TEMPLATE_UNAVAILABLE') }),
      kind: 'permanent',
      code: 'WHATSAPP_TEMPLATE_UNAVAILABLE',
    },
    {
      name: 'WhatsApp Meta 130429 with Retry-After',
      input: failure({
        channel: 'whatsapp',
        httpStatus: 400,
        bodyText: envelope(400, 'WHATSAPP_API_ERROR', '130429'),
        retryAfterHeader: '2',
      }),
      kind: 'rate_limited',
      code: 'whatsapp_130429',
      retryAfterSeconds: 2,
    },
    {
      name: 'WhatsApp Meta code on a 5xx still decides',
      input: failure({ channel: 'whatsapp', httpStatus: 500, bodyText: envelope(500, 'INTERNAL_SERVER_ERROR', '131026') }),
      kind: 'permanent',
      code: 'whatsapp_131026',
      notOnWhatsApp: true,
    },
    {
      name: 'WhatsApp Meta code that is not numeric',
      input: failure({ channel: 'whatsapp', httpStatus: 400, bodyText: envelope(400, 'WHATSAPP_API_ERROR', 'weird') }),
      kind: 'permanent',
      code: 'whatsapp_unknown',
    },
  ];

  for (const row of rows) {
    test(row.name, () => {
      const error = classifyHttpError(row.input);
      assert.equal(error.kind, row.kind);
      assert.equal(error.code, row.code);
      assert.equal(error.httpStatus, row.input.httpStatus);
      assert.equal(error.notOnWhatsApp, row.notOnWhatsApp ?? false);
      assert.equal(error.retryAfterSeconds, row.retryAfterSeconds);
    });
  }

  // The expected classes are written out here, not derived from META_ERROR_CLASSES, so a wrong
  // entry in the table fails this test.
  const metaRows: { codes: string[]; kind: ProviderError['kind']; notOnWhatsApp: boolean }[] = [
    { codes: ['131026', '130472'], kind: 'permanent', notOnWhatsApp: true },
    { codes: ['130429', '131056', '80007', '131048'], kind: 'rate_limited', notOnWhatsApp: false },
    { codes: ['131000', '131057', '131049'], kind: 'permanent', notOnWhatsApp: false },
    {
      codes: ['131009', '100', '132000', '132001', '132012', '132015', '132016', '131031', '368', '131042', '190', '10', '200', '3'],
      kind: 'permanent',
      notOnWhatsApp: false,
    },
    { codes: ['999999', '131047', 'constructor'], kind: 'permanent', notOnWhatsApp: false },
  ];
  for (const row of metaRows) {
    test(`Meta codes ${row.codes.join(', ')} → ${row.kind}${row.notOnWhatsApp ? ' + notOnWhatsApp' : ''}`, () => {
      for (const code of row.codes) {
        assert.deepEqual(classifyMetaCode(code), { kind: row.kind, notOnWhatsApp: row.notOnWhatsApp }, code);
        const error = classifyHttpError({
          channel: 'whatsapp',
          httpStatus: 400,
          bodyText: envelope(400, 'WHATSAPP_API_ERROR', code),
          nowMs,
        });
        assert.equal(error.kind, row.kind, code);
        if (/^\d+$/.test(code)) assert.equal(error.code, `whatsapp_${code}`);
      }
    });
  }

  test('the Meta code is ignored outside WhatsApp', () => {
    const error = classifyHttpError({
      channel: 'sms',
      httpStatus: 503,
      bodyText: envelope(503, 'SERVICE_UNAVAILABLE', '131026'),
      nowMs,
    });
    assert.equal(error.kind, 'transient');
    assert.equal(error.code, 'SERVICE_UNAVAILABLE');
    assert.equal(error.notOnWhatsApp, false);
  });

  test('parseRetryAfter: seconds, HTTP date, past date, garbage', () => {
    assert.equal(parseRetryAfter('12', nowMs), 12);
    assert.equal(parseRetryAfter(' 0 ', nowMs), 0);
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:01:00 GMT', nowMs), 60);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', nowMs), 0);
    assert.equal(parseRetryAfter('soon', nowMs), undefined);
    assert.equal(parseRetryAfter('-5', nowMs), undefined);
    assert.equal(parseRetryAfter('', nowMs), undefined);
    assert.equal(parseRetryAfter(null, nowMs), undefined);
  });

  test('parseErrorBody: envelope, numeric Meta code, non-JSON, wrong shape', () => {
    assert.deepEqual(parseErrorBody(envelope(400, 'WHATSAPP_API_ERROR', 131026)), {
      status: 400,
      code: 'WHATSAPP_API_ERROR',
      requestId: undefined,
      whatsappApiErrorCode: '131026',
    });
    assert.equal(parseErrorBody('<html>502</html>'), undefined);
    assert.equal(parseErrorBody(''), undefined);
    assert.equal(parseErrorBody('"just a string"'), undefined);
    assert.equal(parseErrorBody('{"message":"no envelope"}'), undefined);
    // A wrongly typed field reads as absent rather than discarding the rest.
    assert.deepEqual(parseErrorBody('{"error":{"status":"400","code":"PARAM_INVALID"}}'), {
      status: undefined,
      code: 'PARAM_INVALID',
      requestId: undefined,
      whatsappApiErrorCode: undefined,
    });
  });

  test('classifyTransportFailure: caller abort, timeout, network; which of them may have reached YCloud', () => {
    const cases: [unknown, string, boolean][] = [
      [new HttpAbortedError('x', true), 'aborted', true],
      [new HttpAbortedError('x', false), 'aborted', false],
      [new HttpTimeoutError('x'), 'timeout', true],
      [Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), 'network', false],
      [new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ENOTFOUND' }) }), 'network', false],
      [Object.assign(new Error('x'), { code: 'ECONNRESET' }), 'network', true],
    ];
    for (const [error, code, unknown] of cases) {
      const classified = classifyTransportFailure('sms', error);
      assert.deepEqual([classified.code, classified.kind, classified.outcomeUnknown], [code, 'transient', unknown], String(error));
    }
  });
});

describe('YCloud parseReceipt', () => {
  const createTime = '2026-03-01T10:00:05.000Z';
  const event = (type: string, body: Record<string, unknown>): unknown => ({
    id: 'evt_eEVCy8eNqD9EvcFI',
    type,
    apiVersion: 'v2',
    createTime,
    ...body,
  });
  const waMessage = (fields: Record<string, unknown>): unknown =>
    event('whatsapp.message.updated', {
      whatsappMessage: {
        id: '63f5d602367ea403f8175a6c',
        wamid: 'wamid.HBgNNTUxMTk5OTk5MDAwMBUCABEYEjA',
        wabaId: 'waba_1',
        from: '+15550001000',
        to: '+5511999990000',
        externalId: 'ver_01-1',
        createTime: '2026-03-01T09:59:00.000Z',
        updateTime: '2026-03-01T10:00:04.000Z',
        someFieldAddedLater: { nested: true },
        ...fields,
      },
    });

  test('WhatsApp read uses readTime', () => {
    assert.deepEqual(parseReceipt(waMessage({ status: 'read', readTime: '2026-03-01T10:00:03.000Z' })), {
      channel: 'whatsapp',
      providerMessageId: '63f5d602367ea403f8175a6c',
      externalId: 'ver_01-1',
      status: 'read',
      errorCode: undefined,
      occurredAt: Date.parse('2026-03-01T10:00:03.000Z'),
    });
  });

  test('WhatsApp delivered uses deliverTime, sent uses sendTime', () => {
    const delivered = parseReceipt(waMessage({ status: 'delivered', deliverTime: '2026-03-01T10:00:02.000Z' }));
    assert.equal(delivered?.status, 'delivered');
    assert.equal(delivered?.occurredAt, Date.parse('2026-03-01T10:00:02.000Z'));
    const sent = parseReceipt(waMessage({ status: 'sent', sendTime: '2026-03-01T10:00:01.000Z' }));
    assert.equal(sent?.status, 'sent');
    assert.equal(sent?.occurredAt, Date.parse('2026-03-01T10:00:01.000Z'));
  });

  test('WhatsApp failed prefers the Meta code over errorCode and falls back to updateTime', () => {
    const receipt = parseReceipt(
      waMessage({
        status: 'failed',
        errorCode: 'WHATSAPP_API_ERROR',
        errorMessage: '(#131026) Message undeliverable',
        whatsappApiError: { code: '131026', type: 'OAuthException', message: 'Message undeliverable' },
      }),
    );
    assert.equal(receipt?.status, 'failed');
    assert.equal(receipt?.errorCode, '131026');
    assert.equal(receipt?.occurredAt, Date.parse('2026-03-01T10:00:04.000Z'));
  });

  test('WhatsApp failed without a Meta error keeps the YCloud errorCode; numeric codes become strings', () => {
    assert.equal(parseReceipt(waMessage({ status: 'failed', errorCode: 'RECIPIENT_IN_BLOCK_LIST' }))?.errorCode, 'RECIPIENT_IN_BLOCK_LIST');
    assert.equal(
      parseReceipt(waMessage({ status: 'failed', whatsappApiError: { code: 131056, message: 'pair rate' } }))?.errorCode,
      '131056',
    );
  });

  test('SMS undelivered → failed with its errorCode and updateTime', () => {
    const receipt = parseReceipt(
      event('sms.message.updated', {
        sms: {
          id: 'sms_000001',
          to: '+6281234567890',
          status: 'undelivered',
          errorCode: 'UNDELIVERABLE',
          externalId: 'ver_01-2',
          updateTime: '2026-03-01T10:00:01.500Z',
        },
      }),
    );
    assert.deepEqual(receipt, {
      channel: 'sms',
      providerMessageId: 'sms_000001',
      externalId: 'ver_01-2',
      status: 'failed',
      errorCode: 'UNDELIVERABLE',
      occurredAt: Date.parse('2026-03-01T10:00:01.500Z'),
    });
  });

  test('SMS delivered without updateTime uses the event createTime', () => {
    const receipt = parseReceipt(event('sms.message.updated', { sms: { id: 'sms_000001', to: '+62812', status: 'delivered' } }));
    assert.equal(receipt?.status, 'delivered');
    assert.equal(receipt?.externalId, undefined);
    assert.equal(receipt?.occurredAt, Date.parse(createTime));
  });

  test('email sending → accepted, undelivered → failed, delivered → delivered', () => {
    const email = (status: string, extra: Record<string, unknown> = {}): unknown =>
      event('email.delivery.updated', {
        emailDelivery: { emailId: 'email_000001', recipientAddress: 'ana@example.com', status, externalId: 'ver_01-3', ...extra },
      });
    assert.deepEqual(parseReceipt(email('sending')), {
      channel: 'email',
      providerMessageId: 'email_000001',
      externalId: 'ver_01-3',
      status: 'accepted',
      errorCode: undefined,
      occurredAt: Date.parse(createTime),
    });
    const undelivered = parseReceipt(email('undelivered', { errorCode: '402', errorMessage: 'Unsubscribes' }));
    assert.equal(undelivered?.status, 'failed');
    assert.equal(undelivered?.errorCode, '402');
    assert.equal(parseReceipt(email('delivered'))?.status, 'delivered');
  });

  test('no usable timestamp anywhere → now', () => {
    const before = Date.now();
    const receipt = parseReceipt({
      id: 'evt_000001',
      type: 'sms.message.updated',
      apiVersion: 'v2',
      createTime: 'not a date',
      sms: { id: 'sms_000001', to: '+62812', status: 'sent' },
    });
    const after = Date.now();
    assert.ok(receipt !== null);
    assert.ok(receipt.occurredAt >= before && receipt.occurredAt <= after);
  });

  test('unknown event type → null', () => {
    assert.equal(parseReceipt(event('whatsapp.template.reviewed', { whatsappTemplate: { name: 'otp', status: 'APPROVED' } })), null);
    assert.equal(parseReceipt(event('whatsapp.inbound_message.received', { whatsappInboundMessage: { id: 'x' } })), null);
  });

  test('unknown status value → null, never a throw', () => {
    assert.equal(parseReceipt(waMessage({ status: 'deleted' })), null);
    assert.equal(parseReceipt(event('sms.message.updated', { sms: { id: 'sms_000001', status: 'queued' } })), null);
    assert.equal(parseReceipt(event('email.delivery.updated', { emailDelivery: { emailId: 'email_000001', status: 'bounced' } })), null);
  });

  test('malformed events → null', () => {
    for (const bad of [null, undefined, 42, 'sms.message.updated', [], {}, event('sms.message.updated', {})]) {
      assert.equal(parseReceipt(bad), null);
    }
    assert.equal(parseReceipt(event('whatsapp.message.updated', { whatsappMessage: { status: 'read' } })), null);
  });

  test('the provider exposes the same parser', () => {
    const p = provider('http://127.0.0.1:9/v2');
    assert.equal(p.name, 'ycloud');
    const input = waMessage({ status: 'delivered' });
    assert.deepEqual(p.parseReceipt(input), parseReceipt(input));
  });
});
