import { tenantHashTag } from '../security/tenant-slot.js';

/**
 * Redis key layout. Every key of one verification carries the verification id as its hash tag
 * (`kurir:{ver_…}`), so each Lua transition touches a single slot and the same scripts run on
 * one Redis, Sentinel or Cluster. Each queue gets its own braced prefix for the same reason.
 */
export interface KeySpace {
  readonly prefix: string;
  verification(id: string): string;
  /** Provider message id → `<verificationId>-<n>`, for receipts that do not echo externalId. */
  providerMessage(provider: string, providerMessageId: string): string;
  /**
   * Numbers Meta told a tenant's sends are not on WhatsApp, keyed by the destination MAC (never
   * the number) under the tenant's hash tag, as its send limits and lockouts are: the send gate
   * reads the hint in the script that admits a create.
   */
  noWhatsApp(tenant: string, destinationMac: string): string;
  /** BullMQ prefix for one queue. */
  queuePrefix(queue: string): string;
}

export function createKeySpace(prefix: string): KeySpace {
  return {
    prefix,
    verification: (id) => `${prefix}:{${id}}`,
    providerMessage: (provider, id) => `${prefix}:pm:${provider}:${id}`,
    noWhatsApp: (tenant, destinationMac) => `${prefix}:nowa:${tenantHashTag(tenant)}:${destinationMac}`,
    queuePrefix: (queue) => `{${prefix}-${queue}}`,
  };
}
