import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { RequestHandler } from 'express';
import { KurirError } from '../common/errors.js';
import { QUEUES } from '../common/jobs/catalogue.js';
import type { JobQueues } from '../common/jobs/queues.js';
import { requireAdmin } from './admin.js';

/** Where the BullMQ dashboard (bull-board) is mounted, behind the admin credential. */
export const QUEUE_DASHBOARD_PATH = '/admin/queues';

export interface QueueDashboardDeps {
  adminToken: string | undefined;
  queues: Pick<JobQueues, 'queue'>;
}

/**
 * A browser cannot add a bearer header to a page it navigates to, nor to the script and API
 * requests the dashboard makes. It can answer a Basic challenge, though, and then repeats the
 * credential on every request below the path: the admin token is accepted as the Basic password
 * (any user name) and checked by the same {@link requireAdmin} as every other admin route.
 */
function basicAsBearer(): RequestHandler {
  return (req, _res, next) => {
    const match = /^Basic ([A-Za-z0-9+/]{1,1400}={0,2})$/.exec(req.get('authorization') ?? '');
    if (match?.[1] !== undefined) {
      const decoded = Buffer.from(match[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0) req.headers.authorization = `Bearer ${decoded.slice(colon + 1)}`;
    }
    next();
  };
}

/** requireAdmin, plus a Basic challenge on its 401 so a browser asks for the token. */
function requireAdminOrChallenge(adminToken: string): RequestHandler {
  const check = requireAdmin(adminToken);
  return (req, res, next) => {
    check(req, res, (error?: unknown) => {
      if (error instanceof KurirError && error.code === 'unauthorized') {
        res.setHeader('WWW-Authenticate', ['Basic realm="kurir-admin", charset="UTF-8"', 'Bearer realm="kurir-admin"']);
      }
      next(error);
    });
  };
}

/**
 * The handlers to mount at {@link QUEUE_DASHBOARD_PATH}: every Kurir queue in bull-board (counts,
 * jobs, retry/remove/clean). Without an admin token only requireAdmin remains, which answers 404
 * like the other admin routes, and no queue connection is opened for it.
 */
export function createQueueDashboard(deps: QueueDashboardDeps): RequestHandler[] {
  if (deps.adminToken === undefined) return [requireAdmin(undefined)];
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(QUEUE_DASHBOARD_PATH);
  createBullBoard({
    queues: Object.values(QUEUES).map((name) => new BullMQAdapter(deps.queues.queue(name))),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Kurir queues', hideDocsLink: true } },
  });
  const board = serverAdapter.getRouter() as RequestHandler;
  return [basicAsBearer(), requireAdminOrChallenge(deps.adminToken), board];
}
