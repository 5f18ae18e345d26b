import { randomUUID } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { Registry } from 'prom-client';
import { KurirError } from '../common/errors.js';
import { bearerToken, type ApiKeyAuthenticator } from '../common/security/api-keys.js';
import { readWatchdog } from '../common/runtime/watchdog.js';
import type { RedisClient } from '../common/store/verification.store.js';
import { openApiDocumentJson } from './openapi.js';
import { problemMiddleware, sendProblem } from './problem.js';
import { IDEMPOTENCY_KEY } from './schemas.js';
import { createAdminRouter, type AdminDeps } from './admin.js';
import { createVerification } from './create-verification.js';
import { getLimits } from './limits.handler.js';
import { QUEUE_DASHBOARD_PATH, createQueueDashboard } from './queue-dashboard.js';
import { getStats } from './stats.handler.js';
import {
  cancelVerification,
  checkVerification,
  getVerification,
  resendVerification,
  type Reply,
  type VerificationDeps,
} from './verifications.handlers.js';
import { receiveYCloudWebhook, type WebhookDeps } from './webhooks.handler.js';

export interface ApiDeps {
  verifications: VerificationDeps;
  admin: AdminDeps;
  webhooks: WebhookDeps;
  authenticator: ApiKeyAuthenticator;
  registry: Registry;
  redis: RedisClient;
}

const JSON_LIMIT = '16kb';
const WEBHOOK_LIMIT = '256kb';
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,100}$/;

interface Locals {
  tenant: string;
  requestId: string;
}

function locals(res: Response): Locals {
  return res.locals as Locals;
}

/** Statuses that carry no body, whose headers express's `res.send` strips. */
const BODILESS_STATUSES = new Set([204, 205, 304]);

/** Answers with HTTP details that express's `res.json` takes care of and the direct write does not. */
function needsExpressJson(req: Request, res: Response, reply: Reply): boolean {
  return (
    // Conditional requests: express answers `If-None-Match: *` with 304.
    req.method === 'GET' ||
    req.method === 'HEAD' ||
    reply.body === undefined ||
    BODILESS_STATUSES.has(reply.status) ||
    // A handler's own Content-Type, to which express adds the charset.
    res.hasHeader('Content-Type')
  );
}

/**
 * Writes a handler's reply as JSON. Express's `res.json` → `res.send` re-parses the Content-Type
 * to add its charset, reads app settings and checks freshness on every answer, a measurable share
 * of a create's CPU; the other answers (every POST) are written directly instead, with the headers
 * express would have set (the app sets no JSON replacer, spacing or escaping). X-Request-Id and
 * Cache-Control were set before the route ran.
 */
function send(req: Request, res: Response, reply: Reply): void {
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  res.status(reply.status);
  if (needsExpressJson(req, res, reply)) {
    res.json(reply.body);
    return;
  }
  const json = JSON.stringify(reply.body);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(json));
  res.end(json);
}

/** Wraps a plain handler so express only translates between HTTP and `(input, deps) → Reply`. */
function route(handler: (req: Request, res: Response) => Promise<Reply>): RequestHandler {
  return async (req, res) => {
    send(req, res, await handler(req, res));
  };
}

/** The Content-Type spellings nearly every client sends, recognised without parsing the media type. */
const PLAIN_JSON_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);

/** A body that is present but not JSON is refused outright instead of being read as empty. */
function unsupportedBody(req: Request): KurirError | undefined {
  const length = req.headers['content-length'];
  const hasBody = length !== undefined ? Number(length) > 0 : req.headers['transfer-encoding'] !== undefined;
  if (!hasBody || PLAIN_JSON_TYPES.has(req.headers['content-type'] ?? '')) return undefined;
  return req.is('application/json') ? undefined : new KurirError('unsupported_media_type', 'Send the body as application/json.');
}

/**
 * Bearer API key → tenant, before any body is read or Redis is touched; then the body's media
 * type (one step for both: each step is a hop through express's dispatch on every request).
 */
function authenticate(authenticator: ApiKeyAuthenticator): RequestHandler {
  return (req, res, next) => {
    const header = req.get('authorization');
    const token = bearerToken(header);
    const tenant = token === undefined ? undefined : authenticator.tenantFor(token);
    if (tenant === undefined) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="kurir"');
      next(new KurirError('unauthorized', header === undefined ? 'Authorization: Bearer <api key> is required.' : 'The API key is not valid.'));
      return;
    }
    locals(res).tenant = tenant;
    next(unsupportedBody(req));
  };
}

/**
 * An API route as one express step: the API key, the JSON body, then the handler. As three
 * handlers of the route, every request paid two more hops through the router's dispatch
 * (BENCHMARKS.md, after run J).
 */
function apiRoute(steps: { authenticate: RequestHandler; jsonBody: RequestHandler }, handler: RequestHandler): RequestHandler {
  return (req, res, next) => {
    void steps.authenticate(req, res, (authError?: unknown) => {
      if (authError !== undefined) {
        next(authError);
        return;
      }
      void steps.jsonBody(req, res, (bodyError?: unknown) => {
        if (bodyError !== undefined) next(bodyError);
        else Promise.resolve(handler(req, res, next)).catch(next);
      });
    });
  };
}

export function createApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.set('query parser', 'simple');
  // Every answer is Cache-Control: no-store, so a validator is never used; computing it hashed
  // every response body.
  app.set('etag', false);

  app.use((req, res, next) => {
    const given = req.get('x-request-id');
    const requestId = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
    locals(res).requestId = requestId;
    res.setHeader('X-Request-Id', requestId);
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  // Webhooks: the signature covers the exact bytes, so the body is kept raw here.
  app.post(
    '/v1/webhooks/ycloud',
    (req, _res, next) => {
      if (!req.is('application/json')) next(new KurirError('unsupported_media_type', 'Webhooks must be application/json.'));
      else next();
    },
    express.raw({ type: 'application/json', limit: WEBHOOK_LIMIT }),
    route((req) =>
      receiveYCloudWebhook(
        { rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0), signatureHeader: req.get('ycloud-signature') },
        deps.webhooks,
      ),
    ),
  );

  // The API proper. Its routes sit on the app itself, each one step (apiRoute: the API key, a JSON
  // body, the handler), rather than in a nested `/v1` router with the first two as its
  // middleware: one router level less on every request (BENCHMARKS.md, run F). An unknown `/v1/…`
  // path is therefore a 404 whatever the key.
  const steps = { authenticate: authenticate(deps.authenticator), jsonBody: express.json({ limit: JSON_LIMIT, strict: true, type: 'application/json' }) };
  const v1 = (handler: (req: Request, res: Response) => Promise<Reply>) => apiRoute(steps, route(handler));
  const caller = (res: Response) => ({ tenant: locals(res).tenant, requestId: locals(res).requestId });
  const param = (req: Request) => String(req.params.id ?? '');

  app.post(
    '/v1/verifications',
    v1((req, res) => {
      const idempotencyKey = req.get('idempotency-key');
      if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
        throw new KurirError('invalid_idempotency_key', 'Idempotency-Key must be 1–255 visible ASCII characters.');
      }
      return createVerification({ body: req.body, idempotencyKey, caller: caller(res) }, deps.verifications);
    }),
  );
  app.post(
    '/v1/verifications/:id/check',
    v1((req, res) => checkVerification({ id: param(req), body: req.body, caller: caller(res) }, deps.verifications)),
  );
  app.get('/v1/verifications/:id', v1((req, res) => getVerification({ id: param(req), caller: caller(res) }, deps.verifications)));
  app.post(
    '/v1/verifications/:id/resend',
    v1((req, res) => resendVerification({ id: param(req), body: req.body, caller: caller(res) }, deps.verifications)),
  );
  app.post('/v1/verifications/:id/cancel', v1((req, res) => cancelVerification({ id: param(req), caller: caller(res) }, deps.verifications)));
  app.get('/v1/limits', v1((req, res) => getLimits({ query: { ...req.query }, caller: caller(res) }, deps.verifications)));
  app.get('/v1/stats', v1((req, res) => getStats({ query: { ...req.query }, caller: caller(res) }, deps.verifications)));

  // Operational endpoints, after the API's: a route's place in the list is a path match every
  // request before it pays.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    let problem: KurirError | undefined;
    try {
      await Promise.race([
        deps.redis.ping(),
        new Promise((_resolve, reject) => setTimeout(() => reject(new Error('redis ping timed out')), 1000).unref()),
      ]);
      // The scheduler's watchdog: jobs ready to run that nobody processes make the service unready.
      const watchdog = await readWatchdog(deps.redis, deps.verifications.keys);
      if (watchdog !== undefined && watchdog.stalled.length > 0) {
        problem = new KurirError('service_unavailable', 'Jobs are waiting but no worker processes them.', {
          retryAfterSeconds: 5,
          stalledQueues: watchdog.stalled,
        });
      }
    } catch {
      problem = new KurirError('service_unavailable', 'Redis is not reachable.', { retryAfterSeconds: 1 });
    }
    if (problem === undefined) res.json({ status: 'ready' });
    else sendProblem(res, problem);
  });
  app.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openApiDocumentJson());
  });
  app.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', deps.registry.contentType);
    res.send(await deps.registry.metrics());
  });

  // Before the /admin router: the dashboard also accepts the token as a Basic password (browsers).
  app.use(QUEUE_DASHBOARD_PATH, ...createQueueDashboard({ adminToken: deps.admin.adminToken, queues: deps.verifications.queues }));
  app.use('/admin', createAdminRouter(deps.admin));

  app.use((_req, _res, next) => {
    next(new KurirError('not_found', 'No such endpoint.'));
  });
  app.use(problemMiddleware(deps.verifications.logger));
  return app;
}

export { sendProblem };
