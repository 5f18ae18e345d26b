import { z } from 'zod';
import { tenantPolicy } from '../common/config/policy.js';
import { parseDestination } from '../common/domain/destination.js';
import { KurirError } from '../common/errors.js';
import { iso, validationError, type Caller, type Reply, type VerificationDeps } from './verifications.handlers.js';

const limitsQuerySchema = z.strictObject({
  to: z.string().min(3).max(320),
  ip: z.union([z.ipv4(), z.ipv6()]).optional(),
});

function seconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

/**
 * `GET /v1/limits?to=…&ip=…`: what is left of every limit that applies to a send to `to` (from
 * `ip`), and when each resets, so clients can show "try again in 40 s" instead of guessing.
 * Read-only: asking never counts as a send.
 */
export async function getLimits(input: { query: unknown; caller: Caller }, deps: VerificationDeps): Promise<Reply> {
  const parsed = limitsQuerySchema.safeParse(input.query);
  if (!parsed.success) throw validationError(parsed.error);
  const destination = parseDestination(parsed.data.to);
  if (typeof destination === 'string') {
    throw new KurirError('invalid_destination', '`to` must be an E.164 phone number or an email address.', { reason: destination });
  }
  const { tenant } = input.caller;
  const now = deps.now();
  const status = await deps.gate.status({
    tenant,
    destination,
    destinationMac: deps.vault.destinationMac(destination.value),
    ip: parsed.data.ip,
    security: tenantPolicy(deps.policy, tenant).security,
    now,
  });
  return {
    status: 200,
    body: {
      to: destination.value,
      limits: status.limits.map((limit) => ({
        rule: limit.rule,
        limit: limit.limit,
        used: limit.used,
        remaining: limit.remaining,
        resetAt: limit.resetAt === null ? null : iso(limit.resetAt),
        retryAfterSeconds: seconds(limit.retryAfterMs),
      })),
      lockout: { locked: status.lockout.locked, retryAfterSeconds: seconds(status.lockout.retryAfterMs) },
      quarantined: status.quarantined,
      budgets: status.budgets.map((budget) => ({ ...budget, resetAt: iso(budget.resetAt) })),
    },
  };
}
