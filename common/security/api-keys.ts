import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Resolves a presented API key to its tenant. Keys are held only as SHA-256 digests, so the
 * plaintext keys from the environment are not kept around in memory longer than start-up, and
 * lookups compare fixed-length digests in constant time.
 */
export interface ApiKeyAuthenticator {
  tenantFor(presentedKey: string): string | undefined;
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

export function createApiKeyAuthenticator(keys: ReadonlyMap<string, string>): ApiKeyAuthenticator {
  const entries = [...keys].map(([tenant, key]) => ({ tenant, digest: digest(key) }));
  return {
    tenantFor(presentedKey) {
      const presented = digest(presentedKey);
      let match: string | undefined;
      // Visit every entry so the time taken does not depend on which tenant (if any) matched.
      for (const entry of entries) {
        if (timingSafeEqual(entry.digest, presented)) match = entry.tenant;
      }
      return match;
    },
  };
}

/** The token of an `Authorization: Bearer <token>` header (visible ASCII only), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return /^Bearer ([\x21-\x7E]{1,512})$/.exec(header)?.[1];
}
