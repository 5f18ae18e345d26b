import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApiKeyAuthenticator } from '../common/security/api-keys.js';
import type { Services } from '../common/runtime/services.js';
import { createApp } from './app.js';

/** In-flight requests get this long to finish after a shutdown begins. */
const CLOSE_DEADLINE_MS = 5000;

export interface ApiRole {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Starts the HTTP API on `port` (0 = any free port) over the shared services. */
export async function startApiRole(services: Services, options: { port: number; host?: string }): Promise<ApiRole> {
  const app = createApp({
    verifications: services,
    admin: { ...services, adminToken: services.config.adminToken, tenants: [...services.config.apiKeys.keys()] },
    webhooks: { ...services, webhookSecret: services.config.provider.webhookSecret },
    authenticator: createApiKeyAuthenticator(services.config.apiKeys),
    registry: services.metrics.registry,
    redis: services.redis,
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const listening = app.listen(options.port, options.host ?? '0.0.0.0', () => resolve(listening));
    listening.once('error', reject);
  });
  // Bound slow clients; a body that trickles in must not hold a socket forever.
  server.requestTimeout = 15_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  // While closing, every answer also closes its keep-alive connection; otherwise a client that
  // was mid-request keeps the server open until its own idle timeout.
  server.on('request', (_request, response: ServerResponse) => {
    if (closing !== undefined) response.setHeader('Connection', 'close');
  });
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), CLOSE_DEADLINE_MS).unref();
      })),
  };
}
