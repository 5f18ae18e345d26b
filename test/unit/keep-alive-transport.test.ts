/** The keep-alive HTTP client of the provider calls and the simulator's receipts, on loopback. */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { createKeepAliveTransport, HttpAbortedError, HttpTimeoutError } from '../../common/http/keep-alive-transport.js';

async function withServer(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void, run: (url: string, ports: number[]) => Promise<void>): Promise<void> {
  const ports: number[] = [];
  const server = createServer((req, res) => {
    ports.push(req.socket.remotePort ?? 0);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handler(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/x`, ports);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('keep-alive transport', () => {
  test('posts the body with its length, returns status, headers and text, and reuses the connection', async () => {
    const transport = createKeepAliveTransport();
    try {
      await withServer(
        (req, res, body) => {
          res.writeHead(201, { 'content-type': 'application/json', 'x-echo-length': req.headers['content-length'] ?? '' }).end(JSON.stringify({ got: body }));
        },
        async (url, ports) => {
          const first = await transport.send(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":"é"}', timeoutMs: 1000 });
          assert.equal(first.status, 201);
          assert.equal(first.header('X-Echo-Length'), String(Buffer.byteLength('{"a":"é"}')));
          assert.deepEqual(JSON.parse(first.text), { got: '{"a":"é"}' });
          const second = await transport.send(url, { method: 'GET', headers: {}, timeoutMs: 1000 });
          assert.equal(second.status, 201);
          assert.equal(ports.length, 2);
          assert.equal(ports[0], ports[1], 'the second request did not reuse the connection');
        },
      );
    } finally {
      transport.close();
    }
  });

  test('the deadline covers a body that stalls after the headers', async () => {
    const transport = createKeepAliveTransport();
    try {
      await withServer(
        (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"partial":');
        },
        async (url) => {
          await assert.rejects(transport.send(url, { method: 'POST', headers: {}, body: '{}', timeoutMs: 100 }), HttpTimeoutError);
        },
      );
    } finally {
      transport.close();
    }
  });

  test("the caller's signal aborts an exchange in flight; an aborted signal sends nothing", async () => {
    const transport = createKeepAliveTransport();
    try {
      const controller = new AbortController();
      await withServer(
        () => controller.abort(),
        async (url, ports) => {
          const inFlight = await transport.send(url, { method: 'POST', headers: {}, body: '{}', timeoutMs: 5000, signal: controller.signal }).catch((error: unknown) => error);
          assert.ok(inFlight instanceof HttpAbortedError && inFlight.requestStarted);
          const before = await transport.send(url, { method: 'POST', headers: {}, body: '{}', timeoutMs: 5000, signal: AbortSignal.abort() }).catch((error: unknown) => error);
          assert.ok(before instanceof HttpAbortedError && !before.requestStarted);
          assert.equal(ports.length, 1);
        },
      );
    } finally {
      transport.close();
    }
  });

  test('a refused connection rejects with the socket error code', async () => {
    const transport = createKeepAliveTransport();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const error = await transport.send(`http://127.0.0.1:${port}/`, { method: 'GET', headers: {}, timeoutMs: 1000 }).catch((caught: unknown) => caught);
    assert.equal((error as { code?: string }).code, 'ECONNREFUSED');
    transport.close();
  });
});
