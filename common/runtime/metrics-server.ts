import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

/** A scrape that takes longer than this is cut: Prometheus would have given up already. */
const REQUEST_TIMEOUT_MS = 10_000;

export interface MetricsServer {
  url: string;
  port: number;
  /** Stops listening and drops open connections; idempotent. */
  close(): Promise<void>;
}

/**
 * `GET /metrics` of the process registry on its own port, for the roles without an HTTP API
 * (worker, scheduler). Nothing else is served: anything but GET/HEAD /metrics is 404/405.
 * `port` 0 takes any free port (tests); the composition roots treat `METRICS_PORT=0` as "off".
 */
export async function startMetricsServer(registry: Registry, options: { port: number; host?: string }): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
        response.end(request.method === 'HEAD' ? undefined : text);
      },
      (error: unknown) => {
        response.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${error instanceof Error ? error.message : String(error)}\n`);
      },
    );
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/metrics`,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scrape holds nothing worth waiting for: keep-alive sockets would only delay the exit.
        server.closeAllConnections();
      })),
  };
}

/**
 * The worker's and scheduler's metrics port: off for `port` 0. A port already taken (two roles
 * on one host with the default) is logged and the process runs on without it: losing metrics
 * must not stop OTP delivery, and Prometheus reports the target as down.
 */
export async function serveMetrics(
  registry: Registry,
  options: { port: number; logger: Pick<Logger, 'info' | 'error'> },
): Promise<MetricsServer | undefined> {
  if (options.port === 0) return undefined;
  try {
    const server = await startMetricsServer(registry, { port: options.port });
    options.logger.info({ url: server.url }, 'metrics listening');
    return server;
  } catch (error) {
    options.logger.error(
      { port: options.port, err: { message: error instanceof Error ? error.message : String(error) } },
      'metrics port unavailable, running without /metrics (give each process its own METRICS_PORT, or 0 to turn it off)',
    );
    return undefined;
  }
}
