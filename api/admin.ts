import express, { type RequestHandler } from 'express';
import { z } from 'zod';
import { parseDestination } from '../common/domain/destination.js';
import { KurirError } from '../common/errors.js';
import { bearerToken, createApiKeyAuthenticator } from '../common/security/api-keys.js';
import type { CodeVault } from '../common/security/code-vault.js';
import type { DestinationLockout } from '../common/security/lockout.js';
import type { PumpingGuard } from '../common/security/pumping-guard.js';
import { zodIssues } from './schemas.js';

/**
 * Operator endpoints under /admin, behind their own credential (`KURIR_ADMIN_TOKEN`): a tenant
 * key never opens them. Without a configured token the whole router answers 404, so the surface
 * does not exist at all.
 */
export interface AdminDeps {
  adminToken: string | undefined;
  tenants: readonly string[];
  guard: PumpingGuard;
  lockout: DestinationLockout;
  vault: CodeVault;
  now: () => number;
}

export function requireAdmin(adminToken: string | undefined): RequestHandler {
  // The same digest-and-compare-in-constant-time check as tenant keys, with one "tenant".
  const admin = adminToken === undefined ? undefined : createApiKeyAuthenticator(new Map([['admin', adminToken]]));
  return (req, res, next) => {
    if (admin === undefined) {
      next(new KurirError('not_found', 'No such endpoint.'));
      return;
    }
    const token = bearerToken(req.get('authorization'));
    if (token === undefined || admin.tenantFor(token) === undefined) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="kurir-admin"');
      next(new KurirError('unauthorized', 'The admin credential is missing or wrong.'));
      return;
    }
    next();
  };
}

const tenantQuery = (tenants: readonly string[]) =>
  z.string().refine((tenant) => tenants.includes(tenant), 'not a configured tenant');

export function createAdminRouter(deps: AdminDeps): express.Router {
  const router = express.Router();
  router.use(requireAdmin(deps.adminToken));
  router.use(express.json({ limit: '4kb', type: 'application/json' }));
  const tenant = tenantQuery(deps.tenants);

  router.get('/quarantines', async (req, res) => {
    const query = z.strictObject({ tenant }).safeParse({ ...req.query });
    if (!query.success) throw new KurirError('validation_failed', 'Query must name a tenant.', { errors: zodIssues(query.error) });
    res.json({ quarantines: await deps.guard.listQuarantines(query.data.tenant, deps.now()) });
  });

  router.delete('/quarantines', async (req, res) => {
    const query = z
      .strictObject({ tenant, dimension: z.enum(['prefix', 'country']), value: z.string().min(2).max(20) })
      .safeParse({ ...req.query });
    if (!query.success) throw new KurirError('validation_failed', 'Query needs tenant, dimension and value.', { errors: zodIssues(query.error) });
    const { dimension, value } = query.data;
    const released = await deps.guard.release(query.data.tenant, { dimension, value });
    res.json({ released });
  });

  // Lockouts are per tenant: one tenant's, or without `tenant` every configured tenant's.
  router.post('/unlock', async (req, res) => {
    const body = z.strictObject({ to: z.string().min(3).max(320), tenant: tenant.optional() }).safeParse(req.body);
    if (!body.success) throw new KurirError('validation_failed', 'Body must be {"to": …, "tenant"?: …}.', { errors: zodIssues(body.error) });
    const destination = parseDestination(body.data.to);
    if (typeof destination === 'string') throw new KurirError('invalid_destination', '`to` is not a phone number or email address.');
    const destinationMac = deps.vault.destinationMac(destination.value);
    const tenants = body.data.tenant === undefined ? deps.tenants : [body.data.tenant];
    await Promise.all(tenants.map((name) => deps.lockout.unlock(name, destinationMac)));
    res.json({ unlocked: true, tenants });
  });
  return router;
}
