import { tenantHashTag } from '../security/tenant-slot.js';

/**
 * Redis key layout. Everything kept per destination — its verifications and its lockout — carries
 * the destination's tag as hash tag (`kurir:{d1a2b}:ver_1a2b…`, see {@link destinationTag}), so
 * a check reads the lockout, compares the code and counts a wrong one in a single Lua step on a
 * single slot, and the same scripts run on one Redis, Sentinel or Cluster. A verification id
 * starts with its destination's tag, which is how its key is found from the id alone. Each queue
 * gets its own braced prefix for the same reason.
 */
export interface KeySpace {
  readonly prefix: string;
  verification(id: string): string;
  /**
   * The start of a destination's lockout keys (lockout.ts): `<base><tenant>:<destinationMac>:…`,
   * in the slot of the destination's verifications. The check script builds them from it.
   */
  lockBase(destinationMac: string): string;
  /** The same base for a verification's destination, from its id; undefined for an untagged id. */
  lockBaseOf(verificationId: string): string | undefined;
  /** Provider message id → `<verificationId>-<n>`, for receipts that do not echo externalId. */
  providerMessage(provider: string, providerMessageId: string): string;
  /**
   * Numbers Meta told a tenant's sends are not on WhatsApp, keyed by the destination MAC (never
   * the number) under the tenant's hash tag, as its send limits are: the send gate reads the hint
   * in the script that admits a create.
   */
  noWhatsApp(tenant: string, destinationMac: string): string;
  /**
   * The marker of a tenant's Idempotency-Key (`name`: the id's own part that the key derives),
   * under the tenant's hash tag: the send gate's script reads and writes it (send-gate.lua.ts).
   */
  idempotencyMarker(tenant: string, name: string): string;
  /** BullMQ prefix for one queue. */
  queuePrefix(queue: string): string;
}

/**
 * 16 bits of a destination's MAC (code-vault.ts, base64url) as 4 hex digits: 65,536 tags spread a
 * destination's keys over every Cluster slot. The tag is all an id says about its destination:
 * two ids with the same tag may or may not share a number (1 in 65,536 by chance), and the MAC it
 * comes from is keyed with the secret, so it tells nothing about the number itself.
 */
export function destinationTag(destinationMac: string): string {
  const bytes = Buffer.from(destinationMac, 'base64url');
  if (bytes.length < 2) throw new Error('destination MAC too short for a tag');
  return bytes.toString('hex', 0, 2);
}

/**
 * A destination's lockout keys for one tenant, from its slot's base (`lockBase`): the one
 * definition of their names in TypeScript, as lockout.lua.ts `lock_keys` is in Lua.
 */
export function lockKeyNames(base: string, tenant: string, destinationMac: string): { consecutive: string; daily: string; lock: string } {
  const key = `${base}${tenant}:${destinationMac}`;
  return { consecutive: `${key}:fails`, daily: `${key}:day`, lock: `${key}:locked` };
}

/** A verification id: `ver_`, its destination's tag, 24 hex digits of its own. */
const TAGGED_ID = /^ver_([0-9a-f]{4})[0-9a-f]{24}$/;

export function verificationId(destinationMac: string, ownPart: string): string {
  const id = `ver_${destinationTag(destinationMac)}${ownPart}`;
  if (!TAGGED_ID.test(id)) throw new Error('a verification id needs 24 hex digits of its own');
  return id;
}

/** The tag of a verification's destination, from its id; undefined for an id from before tags (24 digits). */
function tagOf(id: string): string | undefined {
  return TAGGED_ID.exec(id)?.[1];
}

export function createKeySpace(prefix: string): KeySpace {
  const lockBase = (tag: string) => `${prefix}:{d${tag}}:lock:`;
  return {
    prefix,
    verification: (id) => {
      const tag = tagOf(id);
      // An untagged id's record (written before tags) stays where it was: in a slot of its own.
      return tag === undefined ? `${prefix}:{${id}}` : `${prefix}:{d${tag}}:${id}`;
    },
    lockBase: (destinationMac) => lockBase(destinationTag(destinationMac)),
    lockBaseOf: (id) => {
      const tag = tagOf(id);
      return tag === undefined ? undefined : lockBase(tag);
    },
    providerMessage: (provider, id) => `${prefix}:pm:${provider}:${id}`,
    noWhatsApp: (tenant, destinationMac) => `${prefix}:nowa:${tenantHashTag(tenant)}:${destinationMac}`,
    idempotencyMarker: (tenant, name) => `${prefix}:idem:${tenantHashTag(tenant)}:${name}`,
    queuePrefix: (queue) => `{${prefix}-${queue}}`,
  };
}
