/**
 * Looking up a message Kurir is unsure it sent: the YCloud adapter's `lookup` (which only SMS
 * supports, through `GET /v2/sms`), the simulator's side of that endpoint, and which send failures
 * count as "the provider may have it" (`outcomeUnknown`).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { ProviderError, type MessagingProvider } from '../../common/providers/provider.js';
import { createYCloudProvider } from '../../common/providers/ycloud/ycloud.provider.js';
import { MAX_PAGES } from '../../common/providers/ycloud/ycloud-lookup.js';
import { startSimulator, type Simulator } from '../../simulator/simulator.js';

const API_KEY = 'lookup_test_key';
const SPEC_URL = new URL('../../../shared/reference/ycloud-openapi-v2.yaml', import.meta.url);

function adapter(baseUrl: string, timeoutMs = 2000): MessagingProvider {
  return createYCloudProvider({
    baseUrl,
    apiKey: API_KEY,
    whatsappFrom: '+15550001000',
    emailFrom: 'Kurir<no-reply@kurir.example>',
    timeoutMs,
  });
}

const minute = 60_000;
const around = (at: number) => ({ from: at - 1000, to: at + 1000 });

describe('SMS lookup against the simulator', () => {
  let sim: Simulator;
  let ycloud: MessagingProvider;

  before(async () => {
    sim = await startSimulator({
      port: 0,
      apiKey: API_KEY,
      webhookSecret: 'whsec_lookup',
      // Nobody listens: receipts fail quietly, the listed status still follows them.
      webhookUrl: 'http://127.0.0.1:9/hook',
      receiptDelayMs: 5,
      slowReceiptMs: 50,
      receiptRetryDelayMs: 5,
    });
    ycloud = adapter(`${sim.url}/v2`);
  });
  after(async () => {
    await sim.close();
  });

  test('an accepted SMS is found by its externalId, with its provider id', async () => {
    const sent = await ycloud.send({ channel: 'sms', to: '+6281234561002', text: 'code 123456', externalId: 'ver_a-2' });
    const found = await ycloud.lookup({ channel: 'sms', externalId: 'ver_a-2', sentBetween: around(Date.now()) });
    assert.equal(found.kind, 'found');
    assert.equal(found.kind === 'found' ? found.sent.providerMessageId : '', sent.providerMessageId);
  });

  test('the listed status follows the receipts', async () => {
    await ycloud.send({ channel: 'sms', to: '+6281234561001', text: 'code 223344', externalId: 'ver_b-2' });
    // …1001 is delivered after two receipts 5 ms apart.
    let status = '';
    for (let i = 0; i < 100 && status !== 'delivered'; i += 1) {
      const found = await ycloud.lookup({ channel: 'sms', externalId: 'ver_b-2', sentBetween: around(Date.now()) });
      status = found.kind === 'found' ? found.sent.status : found.kind;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(status, 'delivered');
  });

  test('a refused SMS is not a record: absent', async () => {
    await assert.rejects(ycloud.send({ channel: 'sms', to: '+6281234562004', text: 'code 1', externalId: 'ver_c-2' }), ProviderError);
    assert.deepEqual(await ycloud.lookup({ channel: 'sms', externalId: 'ver_c-2', sentBetween: around(Date.now()) }), { kind: 'absent' });
  });

  test('outside the window (beyond the clock-skew margin) it is absent', async () => {
    await ycloud.send({ channel: 'sms', to: '+6281234561002', text: 'code 9', externalId: 'ver_d-2' });
    const long = Date.now() - 10 * minute;
    assert.deepEqual(await ycloud.lookup({ channel: 'sms', externalId: 'ver_d-2', sentBetween: { from: long - minute, to: long } }), { kind: 'absent' });
  });

  test('WhatsApp and email cannot be looked up: unknown, without a request', async () => {
    const before = sim.messages().length;
    for (const channel of ['whatsapp', 'email'] as const) {
      const answer = await ycloud.lookup({ channel, externalId: 'ver_e-1', sentBetween: around(Date.now()) });
      assert.equal(answer.kind, 'unknown');
    }
    assert.equal(sim.messages().length, before);
  });

  test('GET /v2/sms: API key required, bounds checked, newest first, filter.id wins, includeTotal', async () => {
    const get = async (query: string, key: string | null = API_KEY) => {
      const response = await fetch(`${sim.url}/v2/sms?${query}`, { headers: key === null ? {} : { 'X-API-Key': key } });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    assert.equal((await get('', null)).status, 401);
    assert.equal((await get('limit=101')).status, 400);
    assert.equal((await get('page=0')).status, 400);
    assert.equal((await get('filter.createTime.gte=yesterday')).status, 400);

    const first = await ycloud.send({ channel: 'sms', to: '+6281234561002', text: 'code 1', externalId: 'ver_f-2' });
    await ycloud.send({ channel: 'sms', to: '+6281234561002', text: 'code 2', externalId: 'ver_g-2' });
    const page = await get('limit=2&includeTotal=true');
    assert.equal(page.status, 200);
    const items = page.body.items as { externalId: string }[];
    assert.deepEqual(items.map((item) => item.externalId), ['ver_g-2', 'ver_f-2']);
    assert.equal(page.body.length, 2);
    assert.equal(page.body.offset, 0);
    assert.ok(typeof page.body.total === 'number' && page.body.total >= 2);
    const byId = await get(`filter.id=${first.providerMessageId}&filter.createTime.gte=2000-01-01T00:00:00Z&filter.createTime.lte=2000-01-02T00:00:00Z`);
    assert.deepEqual((byId.body.items as { id: string }[]).map((item) => item.id), [first.providerMessageId]);
    // The spec's own example format (a space, an offset) is a date-time too.
    assert.equal((await get('filter.createTime.gte=2022-03-01 12:00:00%2B00:00')).status, 200);
  });
});

describe('SMS lookup: paging, errors and the request it makes', () => {
  /** A fake YCloud that answers every GET with `reply(url)`. */
  async function withFake(reply: (url: URL) => { status: number; body: unknown }, run: (baseUrl: string, urls: URL[]) => Promise<void>): Promise<void> {
    const urls: URL[] = [];
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://fake.invalid');
      urls.push(url);
      const answer = reply(url);
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2`, urls);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
  const fullPage = (page: number) => ({
    status: 200,
    body: { offset: (page - 1) * 100, limit: 100, length: 100, items: Array.from({ length: 100 }, (_, i) => ({ id: `m${page}-${i}`, externalId: `other-${page}-${i}`, status: 'sent' })) },
  });

  test(`more than ${MAX_PAGES} full pages in the window → unknown, after exactly ${MAX_PAGES} requests`, async () => {
    await withFake(
      (url) => fullPage(Number(url.searchParams.get('page'))),
      async (baseUrl, urls) => {
        const answer = await adapter(baseUrl).lookup({ channel: 'sms', externalId: 'ver_x-2', sentBetween: around(Date.now()) });
        assert.equal(answer.kind, 'unknown');
        assert.equal(urls.length, MAX_PAGES);
      },
    );
  });

  test('a match on a later page is found; a short page ends the search', async () => {
    await withFake(
      (url) => {
        const page = Number(url.searchParams.get('page'));
        if (page < 3) return fullPage(page);
        return { status: 200, body: { offset: 200, limit: 100, length: 1, items: [{ id: 'wanted', externalId: 'ver_y-2', status: 'undelivered' }] } };
      },
      async (baseUrl, urls) => {
        const answer = await adapter(baseUrl).lookup({ channel: 'sms', externalId: 'ver_y-2', sentBetween: around(Date.now()) });
        assert.deepEqual(answer, { kind: 'found', sent: { providerMessageId: 'wanted', status: 'failed' } });
        assert.equal(urls.length, 3);
      },
    );
  });

  test('an error answer throws a classified ProviderError', async () => {
    await withFake(
      () => ({ status: 503, body: { error: { status: 503, code: 'SERVICE_UNAVAILABLE', message: 'busy' } } }),
      async (baseUrl) => {
        const error = await adapter(baseUrl)
          .lookup({ channel: 'sms', externalId: 'ver_z-2', sentBetween: around(Date.now()) })
          .then(() => undefined, (caught: unknown) => caught);
        assert.ok(error instanceof ProviderError);
        assert.equal(error.kind, 'transient');
      },
    );
  });

  test('the query uses only parameters GET /sms declares, within their bounds, and widens the window for clock skew', async (t) => {
    let spec: unknown;
    try {
      spec = parse(readFileSync(SPEC_URL, 'utf8'));
    } catch {
      t.skip('YCloud OpenAPI spec not found: shared/reference folder absent');
      return;
    }
    const operation = (spec as { paths: Record<string, { get: { parameters: { name: string; schema: { maximum?: number; minimum?: number; format?: string } }[] } }> }).paths['/sms']?.get;
    assert.ok(operation !== undefined);
    const declared = new Map(operation.parameters.map((parameter) => [parameter.name, parameter.schema]));
    await withFake(
      () => ({ status: 200, body: { offset: 0, limit: 100, length: 0, items: [] } }),
      async (baseUrl, urls) => {
        const sentAt = Date.parse('2026-12-02T10:00:00Z');
        await adapter(baseUrl).lookup({ channel: 'sms', externalId: 'ver_q-2', sentBetween: { from: sentAt, to: sentAt + 8000 } });
        const [url] = urls;
        assert.ok(url !== undefined);
        assert.equal(url.pathname, '/v2/sms');
        for (const [name, value] of url.searchParams) {
          const schema = declared.get(name);
          assert.ok(schema !== undefined, `${name} is not a parameter of GET /sms`);
          if (schema.maximum !== undefined) assert.ok(Number(value) <= schema.maximum && Number(value) >= (schema.minimum ?? 0), `${name}=${value}`);
          if (schema.format === 'date-time') assert.ok(!Number.isNaN(Date.parse(value)), `${name}=${value}`);
        }
        assert.ok(Date.parse(url.searchParams.get('filter.createTime.gte') ?? '') < sentAt);
        assert.ok(Date.parse(url.searchParams.get('filter.createTime.lte') ?? '') > sentAt + 8000);
      },
    );
  });
});

describe('which failed sends may have reached the provider (outcomeUnknown)', () => {
  const sms = { channel: 'sms' as const, to: '+6281234561002', text: 'code 1', externalId: 'ver_o-2' };
  const failure = async (provider: MessagingProvider): Promise<ProviderError> => {
    const error = await provider.send(sms).then(() => undefined, (caught: unknown) => caught);
    assert.ok(error instanceof ProviderError);
    return error;
  };

  test('a refused connection never sent anything', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const error = await failure(adapter(`http://127.0.0.1:${port}/v2`));
    assert.equal(error.code, 'network');
    assert.equal(error.outcomeUnknown, false);
  });

  test('a timeout and a connection dropped after the request are unknown; an HTTP error is not', async () => {
    let mode: 'hang' | 'drop' | 'error' = 'hang';
    const server = createServer((req, res) => {
      req.resume();
      if (mode === 'drop') req.on('end', () => res.destroy());
      if (mode === 'error') res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"status":500,"code":"INTERNAL"}}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2`;
    try {
      const timedOut = await failure(adapter(baseUrl, 100));
      assert.deepEqual([timedOut.code, timedOut.outcomeUnknown], ['timeout', true]);
      mode = 'drop';
      const dropped = await failure(adapter(baseUrl));
      assert.deepEqual([dropped.code, dropped.outcomeUnknown], ['network', true]);
      mode = 'error';
      const refused = await failure(adapter(baseUrl));
      assert.equal(refused.outcomeUnknown, false);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
