/**
 * The provider simulator over real loopback HTTP: a tiny `node:http` receiver stands in for Kurir's
 * webhook endpoint. Every wait is on an event (a request arriving, a promise settling) — no sleeps.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { signPayload } from '../../common/providers/ycloud/ycloud-signature.js';
import { MAGIC_NUMBERS, outcomeFor } from '../../simulator/magic-numbers.js';
import { startSimulator, type ReceiptFailure, type Simulator, type SimulatorOptions } from '../../simulator/simulator.js';

const API_KEY = 'test_api_key';
const SECRET = 'whsec_test_simulator';
const RECEIPT_DELAY_MS = 10;
const SLOW_RECEIPT_MS = 300;
const WAIT_MS = 3_000;

type Json = Record<string, unknown>;

interface ReceivedEvent {
  id: string;
  type: string;
  apiVersion: string;
  createTime: string;
  whatsappMessage?: Json;
  sms?: Json;
  emailDelivery?: Json;
}

interface Received {
  headers: IncomingHttpHeaders;
  raw: Buffer;
  event: ReceivedEvent;
  /** What the receiver answered. */
  answered: number;
  at: number;
}

/** Kurir's webhook endpoint, reduced to "record everything, optionally fail the next N". */
interface Receiver {
  url: string;
  received: Received[];
  failNext(count: number): void;
  /** Resolves once `count` requests matching `filter` arrived (counting earlier ones). */
  waitFor(count: number, filter?: (r: Received) => boolean): Promise<Received[]>;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const listeners = new Set<() => void>();
  let failures = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const answered = failures > 0 ? 500 : 200;
      if (failures > 0) failures -= 1;
      received.push({ headers: req.headers, raw, event: JSON.parse(raw.toString('utf8')) as ReceivedEvent, answered, at: Date.now() });
      res.writeHead(answered).end();
      for (const listener of [...listeners]) listener();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/webhooks/ycloud`,
    received,
    failNext(count) {
      failures = count;
    },
    waitFor(count, filter = () => true) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const matching = received.filter(filter);
          if (matching.length < count) return false;
          listeners.delete(listener);
          clearTimeout(timer);
          resolve(matching);
          return true;
        };
        const listener = (): void => void check();
        // A safety net so a broken simulator fails the test instead of hanging it.
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error(`receiver: expected ${count} requests, got ${received.filter(filter).length}`));
        }, WAIT_MS);
        listeners.add(listener);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface Harness {
  sim: Simulator;
  receiver: Receiver;
  send(path: string, body: unknown, apiKey?: string | null): Promise<{ status: number; headers: Headers; body: Json }>;
}

/** Fresh simulator + receiver per test, always torn down, whatever the test did. */
async function withSimulator(fn: (h: Harness) => Promise<void>, overrides: Partial<SimulatorOptions> = {}): Promise<void> {
  const receiver = await startReceiver();
  const sim = await startSimulator({
    port: 0,
    apiKey: API_KEY,
    webhookSecret: SECRET,
    webhookUrl: receiver.url,
    receiptDelayMs: RECEIPT_DELAY_MS,
    slowReceiptMs: SLOW_RECEIPT_MS,
    receiptRetryDelayMs: 20,
    ...overrides,
  });
  const send: Harness['send'] = async (path, body, apiKey = API_KEY) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (apiKey !== null) headers['x-api-key'] = apiKey;
    const response = await fetch(`${sim.url}/v2${path}`, {
      method: 'POST',
      headers,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as Json };
  };
  try {
    await fn({ sim, receiver, send });
  } finally {
    await sim.close();
    await receiver.close();
  }
}

function whatsappBody(to: string, externalId: string, code = '123456'): Json {
  return {
    from: '+15550001000',
    to,
    type: 'template',
    externalId,
    template: {
      name: 'otp_copy_code',
      language: { code: 'en_US', policy: 'deterministic' },
      components: [
        { type: 'body', parameters: [{ type: 'text', text: code }] },
        { type: 'button', sub_type: 'url', index: '0', parameters: [{ type: 'text', text: code }] },
      ],
    },
  };
}

const smsBody = (to: string, externalId: string): Json => ({
  to,
  text: 'Your Kurir code is 654321. It expires in 10 minutes.',
  senderId: 'Kurir',
  externalId,
});

const emailBody = (to: string, externalId: string): Json => ({
  from: 'Kurir<no-reply@kurir.test>',
  to,
  subject: 'Your verification code',
  content: '<div style="color:#333333;width:600px">Your code is <b>482913</b></div>',
  contentType: 'text/html',
  externalId,
});

/** The receipts object of an event, whatever its channel. */
function payloadOf(r: Received): Json {
  const payload = r.event.whatsappMessage ?? r.event.sms ?? r.event.emailDelivery;
  assert.ok(payload, `event ${r.event.type} carries no receipt object`);
  return payload;
}

const forMessage = (id: string) => (r: Received) => {
  const payload = payloadOf(r);
  return payload['id'] === id || payload['emailId'] === id;
};

const statuses = (rs: Received[]): unknown[] => rs.map((r) => payloadOf(r)['status']);

function assertSigned(r: Received): void {
  const header = r.headers['ycloud-signature'];
  assert.equal(typeof header, 'string');
  const match = /^t=(\d+),s=([0-9a-f]{64})$/.exec(String(header));
  assert.ok(match, `malformed signature header ${String(header)}`);
  const t = Number(match[1]);
  assert.ok(Math.abs(Date.now() / 1000 - t) < 60, 'signature timestamp is not current');
  assert.equal(match[2], signPayload(SECRET, t, r.raw));
}

function assertEnvelope(r: Received, type: string): void {
  assert.match(r.event.id, /^evt_.{6,}$/);
  assert.equal(r.event.type, type);
  assert.equal(r.event.apiVersion, 'v2');
  assert.ok(!Number.isNaN(Date.parse(r.event.createTime)));
  assert.equal(r.headers['content-type'], 'application/json');
}

/** Timers and sockets keeping the process alive (unref'd ones are not listed). */
const activeHandles = (): string[] =>
  process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r.startsWith('TCP'));

/**
 * Closed handles leave the list only when libuv runs their close callbacks, a loop turn or two
 * after `close()` resolved; so give the loop a bounded number of turns (not time) to get there.
 * A real leak — a pending receipt timer, an open server — never goes away and fails the test.
 */
async function handlesOnceSettled(): Promise<string[]> {
  let handles = activeHandles();
  for (let turn = 0; turn < 20 && handles.length > 0; turn += 1) {
    await nextTurn();
    handles = activeHandles();
  }
  return handles;
}

describe('outcomeFor', () => {
  it('maps the WhatsApp magic digits and defaults to delivered', () => {
    assert.equal(outcomeFor('whatsapp', MAGIC_NUMBERS.whatsappFailedReceipt).name, 'failed_receipt');
    assert.equal(outcomeFor('whatsapp', MAGIC_NUMBERS.whatsappSentOnly).name, 'sent_only');
    assert.equal(outcomeFor('whatsapp', MAGIC_NUMBERS.whatsappNotWhatsappUser).refusal?.whatsappApiError?.code, '131026');
    assert.equal(outcomeFor('whatsapp', MAGIC_NUMBERS.whatsappFlaky).refuseFirstCalls, 2);
    assert.equal(outcomeFor('whatsapp', MAGIC_NUMBERS.whatsappRateLimited).refusal?.retryAfterSeconds, 1);
    assert.equal(outcomeFor('whatsapp', '+6281234567890').name, 'delivered');
  });

  it('lets SMS ignore the WhatsApp digits, which is what makes fallback observable', () => {
    assert.equal(outcomeFor('sms', MAGIC_NUMBERS.whatsappFailedReceipt).name, 'delivered');
    assert.equal(outcomeFor('sms', MAGIC_NUMBERS.smsUndelivered).name, 'undelivered');
    assert.equal(outcomeFor('sms', MAGIC_NUMBERS.smsUnavailable).refusal?.httpStatus, 503);
  });

  it('bounces email only for a +bounce local part', () => {
    assert.equal(outcomeFor('email', 'Someone+Bounce@Example.com').name, 'bounce');
    assert.equal(outcomeFor('email', 'bounce@example.com').name, 'delivered');
  });
});

describe('provider simulator', () => {
  it('refuses calls without the right X-API-Key with YCloud 401, and records them', async () => {
    await withSimulator(async ({ sim, send }) => {
      for (const key of [null, 'wrong']) {
        const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappDelivered, 'v-401'), key);
        assert.equal(answer.status, 401);
        const error = answer.body['error'] as Json;
        assert.equal(error['status'], 401);
        assert.equal(error['code'], 'UNAUTHORIZED');
        assert.equal(typeof error['message'], 'string');
      }
      assert.deepEqual(
        sim.messages().map((m) => [m.httpStatus, m.id, m.outcome]),
        [
          [401, '', 'unauthorized'],
          [401, '', 'unauthorized'],
        ],
      );
    });
  });

  it('answers 400 PARAM_INVALID with a target for missing or invalid fields', async () => {
    await withSimulator(async ({ send }) => {
      const cases: { path: string; body: unknown; target: string }[] = [
        { path: '/whatsapp/messages/sendDirectly', body: { ...whatsappBody('+6281234561000', 'v'), to: undefined }, target: 'to' },
        { path: '/whatsapp/messages/sendDirectly', body: whatsappBody('081234561000', 'v'), target: 'to' },
        { path: '/whatsapp/messages/sendDirectly', body: { ...whatsappBody('+6281234561000', 'v'), template: undefined }, target: 'template' },
        { path: '/sms', body: { to: '+6281234561000' }, target: 'text' },
        { path: '/emails', body: { ...emailBody('not-an-address', 'v') }, target: 'to' },
        { path: '/sms', body: '{not json', target: '' },
      ];
      for (const c of cases) {
        const answer = await send(c.path, c.body);
        assert.equal(answer.status, 400, `${c.path} ${JSON.stringify(c.body)}`);
        const error = answer.body['error'] as Json;
        assert.equal(error['code'], 'PARAM_INVALID');
        assert.equal(error['target'], c.target);
        assert.equal(typeof error['message'], 'string');
      }
      const missingTo = await send('/sms', { text: 'hi 1234' });
      assert.equal((missingTo.body['error'] as Json)['message'], 'to is required');
    });
  });

  it('accepts a WhatsApp template and posts signed sent → delivered receipts', async () => {
    await withSimulator(async ({ sim, receiver, send }) => {
      const to = MAGIC_NUMBERS.whatsappDelivered;
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(to, 'ver_1-1', '918273'));
      assert.equal(answer.status, 200);
      const message = answer.body;
      assert.equal(typeof message['id'], 'string');
      assert.match(String(message['wamid']), /^wamid\./);
      assert.equal(typeof message['wabaId'], 'string');
      assert.equal(message['from'], '+15550001000');
      assert.equal(message['to'], to);
      assert.equal(message['type'], 'template');
      assert.equal((message['template'] as Json)['name'], 'otp_copy_code');
      assert.equal(message['externalId'], 'ver_1-1');
      assert.equal(message['status'], 'accepted');
      assert.ok(!Number.isNaN(Date.parse(String(message['createTime']))));
      assert.ok(answer.headers.get('ycloud-request-id'));

      const id = String(message['id']);
      const receipts = await receiver.waitFor(2, forMessage(id));
      assert.deepEqual(statuses(receipts), ['sent', 'delivered']);
      for (const r of receipts) {
        assertEnvelope(r, 'whatsapp.message.updated');
        assertSigned(r);
        const payload = payloadOf(r);
        assert.equal(payload['externalId'], 'ver_1-1');
        assert.equal(payload['wamid'], message['wamid']);
        assert.equal(typeof payload['updateTime'], 'string');
      }
      assert.equal(typeof payloadOf(receipts[1]!)['deliverTime'], 'string');
      assert.notEqual(receipts[0]!.event.id, receipts[1]!.event.id);

      const [recorded] = sim.messagesTo(to);
      assert.equal(recorded?.id, id);
      assert.equal(recorded?.code, '918273');
      assert.equal(recorded?.channel, 'whatsapp');
      assert.equal(recorded?.httpStatus, 200);
      assert.equal(recorded?.outcome, 'delivered');
    });
  });

  it('1001: sent, then failed with Meta 131049', async () => {
    await withSimulator(async ({ receiver, send }) => {
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappFailedReceipt, 'v-1001'));
      assert.equal(answer.status, 200);
      const receipts = await receiver.waitFor(2, forMessage(String(answer.body['id'])));
      assert.deepEqual(statuses(receipts), ['sent', 'failed']);
      const failed = payloadOf(receipts[1]!);
      assert.equal(failed['errorCode'], '131049');
      const metaError = failed['whatsappApiError'] as Json;
      assert.equal(metaError['code'], '131049');
      assert.equal(metaError['type'], 'OAuthException');
      receipts.forEach(assertSigned);
    });
  });

  it('1003: synchronous 400 carrying whatsappApiError 131026, and no receipts', async () => {
    await withSimulator(async ({ sim, receiver, send }) => {
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappNotWhatsappUser, 'v-1003'));
      assert.equal(answer.status, 400);
      const error = answer.body['error'] as Json;
      assert.equal(error['status'], 400);
      assert.equal(error['code'], 'PARAM_INVALID');
      assert.deepEqual(error['whatsappApiError'], { code: '131026', type: 'OAuthException', message: 'Message undeliverable' });
      assert.equal(sim.messages()[0]?.id, '');
      assert.equal(sim.messages()[0]?.outcome, 'not_whatsapp_user');

      // A receipt of the refused send would have arrived before the last receipt of a later send.
      const later = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappDelivered, 'v-later'));
      await receiver.waitFor(2, forMessage(String(later.body['id'])));
      assert.equal(receiver.received.length, 2);
    });
  });

  it('1002: only a sent receipt, never delivered', async () => {
    await withSimulator(async ({ receiver, send }) => {
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappSentOnly, 'v-1002'));
      const id = String(answer.body['id']);
      const later = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappDelivered, 'v-later'));
      await receiver.waitFor(2, forMessage(String(later.body['id'])));
      // The 1002 delivered receipt, had there been one, was due before the later send's.
      assert.deepEqual(statuses(receiver.received.filter(forMessage(id))), ['sent']);
    });
  });

  it('1004 answers 503 on every call; 1009 answers 429 with Retry-After: 1', async () => {
    await withSimulator(async ({ send }) => {
      for (const externalId of ['a', 'a', 'b']) {
        const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappUnavailable, externalId));
        assert.equal(answer.status, 503);
        assert.equal((answer.body['error'] as Json)['code'], 'SERVICE_UNAVAILABLE');
      }
      const limited = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappRateLimited, 'c'));
      assert.equal(limited.status, 429);
      assert.equal(limited.headers.get('retry-after'), '1');
      assert.equal((limited.body['error'] as Json)['code'], 'TOO_MANY_REQUESTS');
    });
  });

  it('1005: 503 on the first 2 calls per externalId, then success with receipts', async () => {
    await withSimulator(async ({ sim, receiver, send }) => {
      const codes: number[] = [];
      for (let i = 0; i < 3; i += 1) {
        codes.push((await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappFlaky, 'v-1005'))).status);
      }
      assert.deepEqual(codes, [503, 503, 200]);
      const other = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappFlaky, 'v-1005-other'));
      assert.equal(other.status, 503, 'the count is per externalId');

      const accepted = sim.messages().find((m) => m.httpStatus === 200);
      assert.ok(accepted);
      assert.equal(accepted.outcome, 'flaky');
      assert.deepEqual(statuses(await receiver.waitFor(2, forMessage(accepted.id))), ['sent', 'delivered']);
    });
  });

  it('1006: delivered only after slowReceiptMs', async () => {
    await withSimulator(async ({ receiver, send }) => {
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappSlowReceipt, 'v-1006'));
      const receipts = await receiver.waitFor(2, forMessage(String(answer.body['id'])));
      assert.deepEqual(statuses(receipts), ['sent', 'delivered']);
      // Timers may fire a millisecond or two early relative to Date.now().
      assert.ok(receipts[1]!.at - receipts[0]!.at >= SLOW_RECEIPT_MS - 5, `gap ${receipts[1]!.at - receipts[0]!.at} ms`);
    });
  });

  it('1007: a read receipt without any delivered one', async () => {
    await withSimulator(async ({ receiver, send }) => {
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappReadOnly, 'v-1007'));
      const id = String(answer.body['id']);
      const [read] = await receiver.waitFor(1, forMessage(id));
      assert.equal(payloadOf(read!)['status'], 'read');
      assert.equal(typeof payloadOf(read!)['readTime'], 'string');
      const later = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappDelivered, 'v-later'));
      await receiver.waitFor(2, forMessage(String(later.body['id'])));
      assert.deepEqual(statuses(receiver.received.filter(forMessage(id))), ['read']);
    });
  });

  it('1008: delivered, sent, then the same delivered event again (same id, same bytes)', async () => {
    await withSimulator(async ({ receiver, send }) => {
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappDuplicateReceipts, 'v-1008'));
      const receipts = await receiver.waitFor(3, forMessage(String(answer.body['id'])));
      assert.deepEqual(statuses(receipts), ['delivered', 'sent', 'delivered']);
      const [first, second, third] = receipts;
      assert.equal(third!.event.id, first!.event.id);
      assert.notEqual(second!.event.id, first!.event.id);
      assert.deepEqual(third!.raw, first!.raw);
      receipts.forEach(assertSigned);
    });
  });

  it('retries a receipt the receiver refused, keeping the event id', async () => {
    await withSimulator(async ({ receiver, send }) => {
      receiver.failNext(1);
      const answer = await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappDelivered, 'v-retry'));
      const receipts = await receiver.waitFor(3, forMessage(String(answer.body['id'])));
      assert.deepEqual(
        receipts.map((r) => [payloadOf(r)['status'], r.answered]),
        [
          ['sent', 500],
          ['sent', 200],
          ['delivered', 200],
        ],
      );
      assert.equal(receipts[1]!.event.id, receipts[0]!.event.id);
      assert.deepEqual(receipts[1]!.raw, receipts[0]!.raw);
    });
  });

  it('gives up after 3 tries and reports it', async () => {
    let reportFailure: (failure: ReceiptFailure) => void = () => undefined;
    const reported = new Promise<ReceiptFailure>((resolve) => {
      reportFailure = resolve;
    });
    await withSimulator(
      async ({ receiver, send }) => {
        receiver.failNext(3);
        await send('/whatsapp/messages/sendDirectly', whatsappBody(MAGIC_NUMBERS.whatsappSentOnly, 'v-giveup'));
        const failure = await reported;
        assert.equal(failure.attempts, 3);
        assert.equal(failure.reason, 'HTTP 500');
        assert.equal(failure.eventType, 'whatsapp.message.updated');
        assert.equal(receiver.received.length, 3);
        assert.equal(new Set(receiver.received.map((r) => r.event.id)).size, 1);
      },
      { onReceiptFailed: (failure) => reportFailure(failure) },
    );
  });

  it('SMS: sent → delivered even to a WhatsApp-failing number; 2001 undelivered; 2004 503', async () => {
    await withSimulator(async ({ sim, receiver, send }) => {
      const answer = await send('/sms', smsBody(MAGIC_NUMBERS.whatsappFailedReceipt, 'v-sms'));
      assert.equal(answer.status, 200);
      const sms = answer.body;
      assert.equal(sms['to'], MAGIC_NUMBERS.whatsappFailedReceipt);
      assert.equal(sms['status'], 'accepted');
      assert.equal(sms['externalId'], 'v-sms');
      assert.equal(sms['senderId'], 'Kurir');
      assert.equal(sms['totalSegments'], 1);
      assert.equal(sms['regionCode'], 'ID');
      const receipts = await receiver.waitFor(2, forMessage(String(sms['id'])));
      assert.deepEqual(statuses(receipts), ['sent', 'delivered']);
      for (const r of receipts) {
        assertEnvelope(r, 'sms.message.updated');
        assertSigned(r);
        assert.equal(payloadOf(r)['externalId'], 'v-sms');
      }
      assert.equal(sim.messagesTo(MAGIC_NUMBERS.whatsappFailedReceipt)[0]?.code, '654321');

      const undelivered = await send('/sms', smsBody(MAGIC_NUMBERS.smsUndelivered, 'v-2001'));
      const failedReceipts = await receiver.waitFor(2, forMessage(String(undelivered.body['id'])));
      assert.deepEqual(statuses(failedReceipts), ['sent', 'undelivered']);
      assert.equal(payloadOf(failedReceipts[1]!)['errorCode'], '30008');

      const down = await send('/sms', smsBody(MAGIC_NUMBERS.smsUnavailable, 'v-2004'));
      assert.equal(down.status, 503);
      assert.equal((down.body['error'] as Json)['code'], 'SERVICE_UNAVAILABLE');
    });
  });

  it('email: sent → delivered, +bounce → undelivered 550, code found outside the markup', async () => {
    await withSimulator(async ({ sim, receiver, send }) => {
      const answer = await send('/emails', emailBody('Ana@Example.com', 'v-mail'));
      assert.equal(answer.status, 200);
      const email = answer.body;
      assert.deepEqual(email['to'], [{ address: 'ana@example.com' }]);
      assert.deepEqual(email['from'], { address: 'no-reply@kurir.test', name: 'Kurir' });
      assert.equal(email['subject'], 'Your verification code');
      assert.equal(email['externalId'], 'v-mail');
      const receipts = await receiver.waitFor(2, forMessage(String(email['id'])));
      assert.deepEqual(statuses(receipts), ['sent', 'delivered']);
      for (const r of receipts) {
        assertEnvelope(r, 'email.delivery.updated');
        assertSigned(r);
        assert.equal(payloadOf(r)['recipientAddress'], 'ana@example.com');
        assert.equal(payloadOf(r)['externalId'], 'v-mail');
      }
      const [recorded] = sim.messagesTo('ANA@example.com');
      assert.equal(recorded?.code, '482913');
      assert.equal(recorded?.text, 'Your verification code');

      const bounce = await send('/emails', emailBody(MAGIC_NUMBERS.emailBounce, 'v-bounce'));
      const bounced = await receiver.waitFor(2, forMessage(String(bounce.body['id'])));
      assert.deepEqual(statuses(bounced), ['sent', 'undelivered']);
      assert.equal(payloadOf(bounced[1]!)['errorCode'], '550');
    });
  });

  it('waitForMessage is event-driven, sees past messages, and rejects on timeout', async () => {
    await withSimulator(async ({ sim, send }) => {
      const pending = sim.waitForMessage((m) => m.externalId === 'v-wait');
      await send('/sms', smsBody('+6281234567801', 'v-wait'));
      const message = await pending;
      assert.equal(message.httpStatus, 200);
      assert.equal((await sim.waitForMessage((m) => m.externalId === 'v-wait', 1)).id, message.id);
      await assert.rejects(sim.waitForMessage((m) => m.externalId === 'never', 20), /no matching simulator message/);
    });
  });

  it('serves /_simulator/messages and /_simulator/healthz', async () => {
    await withSimulator(async ({ sim, send }) => {
      await send('/sms', smsBody('+6281234567802', 'v-list'));
      const health = await fetch(`${sim.url}/_simulator/healthz`);
      assert.equal(health.status, 200);
      const list = (await (await fetch(`${sim.url}/_simulator/messages`)).json()) as Json[];
      assert.deepEqual(
        list.map((m) => [m['channel'], m['to'], m['externalId']]),
        [['sms', '+6281234567802', 'v-list']],
      );
      const unknown = await send('/whatsapp/messages', whatsappBody(MAGIC_NUMBERS.whatsappDelivered, 'x'));
      assert.equal(unknown.status, 404);
    });
  });

  it('setWebhookUrl redirects receipts', async () => {
    const other = await startReceiver();
    try {
      await withSimulator(async ({ sim, receiver, send }) => {
        sim.setWebhookUrl(other.url);
        const answer = await send('/sms', smsBody('+6281234567803', 'v-redirect'));
        await other.waitFor(2, forMessage(String(answer.body['id'])));
        assert.equal(receiver.received.length, 0);
      });
    } finally {
      await other.close();
    }
  });

  it('close() cancels pending receipts, leaves no timers or sockets, and is idempotent', async () => {
    // Every earlier test closed what it opened, so nothing of ours may be alive here either.
    assert.deepEqual(await handlesOnceSettled(), []);
    const receiver = await startReceiver();
    const sim = await startSimulator({
      port: 0,
      apiKey: API_KEY,
      webhookSecret: SECRET,
      webhookUrl: receiver.url,
      receiptDelayMs: RECEIPT_DELAY_MS,
      // Far beyond the test: a timer that close() failed to cancel would keep the process alive.
      slowReceiptMs: 60_000,
    });
    try {
      const answer = await fetch(`${sim.url}/v2/whatsapp/messages/sendDirectly`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
        body: JSON.stringify(whatsappBody(MAGIC_NUMBERS.whatsappSlowReceipt, 'v-close')),
      });
      const id = String(((await answer.json()) as Json)['id']);
      await receiver.waitFor(1, forMessage(id));
      const waiting = assert.rejects(sim.waitForMessage(() => false, 60_000), /simulator closed/);
      await Promise.all([sim.close(), sim.close()]);
      await waiting;
      await sim.close();
      await assert.rejects(fetch(`${sim.url}/_simulator/healthz`));
    } finally {
      await sim.close();
      await receiver.close();
    }
    assert.deepEqual(await handlesOnceSettled(), []);
    assert.deepEqual(statuses(receiver.received), ['sent']);
  });
});
