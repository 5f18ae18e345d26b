import { BlockList, isIP } from 'node:net';

/**
 * Validation of a tenant's `callbackUrl`. The same function runs when a verification is created
 * (api) and again right before each callback is posted (worker), so a URL stored under a laxer
 * configuration is never posted under a stricter one.
 *
 * What it cannot do: a host *name* may resolve to a private address (or be re-pointed there
 * after validation, "DNS rebinding"). Blocking that belongs at the network egress (a proxy or
 * firewall that refuses private destinations for the worker); here only IP literals are refused.
 */

/** Longest URL accepted, as most HTTP stacks and browsers handle it. */
export const CALLBACK_URL_MAX_LENGTH = 2048;

export type CallbackUrlProblem =
  | 'too_long'
  | 'not_ascii'
  | 'malformed'
  | 'scheme'
  | 'credentials'
  | 'fragment'
  | 'private_address';

export type CallbackUrlCheck = { ok: true; url: string } | { ok: false; problem: CallbackUrlProblem; message: string };

const MESSAGES: Record<CallbackUrlProblem, string> = {
  too_long: `at most ${CALLBACK_URL_MAX_LENGTH} characters`,
  not_ascii: 'visible ASCII only (encode other characters; IDNA host names as xn--…)',
  malformed: 'not an absolute URL',
  scheme: 'must be an https:// URL (http:// only outside production)',
  credentials: 'must not contain credentials (user:password@)',
  fragment: 'must not contain a fragment (#…)',
  private_address: 'must not point to a loopback, private or link-local address',
};

/** Loopback, private, link-local, "this network", CGNAT and unique-local ranges (RFC 6890 and friends). */
const BLOCKED = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const) {
  BLOCKED.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  // NAT64 would smuggle an IPv4 address through an IPv6 literal. (IPv4-mapped ones,
  // ::ffff:a.b.c.d, need no rule: BlockList matches them against the IPv4 ranges above.)
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
] as const) {
  BLOCKED.addSubnet(network, prefix, 'ipv6');
}

/** True for an IP literal in a range a callback must never reach; false for names and public IPs. */
export function isBlockedAddress(hostname: string): boolean {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname.replace(/\.$/, '');
  const family = isIP(bare);
  if (family === 0) return false;
  return BLOCKED.check(bare, family === 4 ? 'ipv4' : 'ipv6');
}

/** `localhost` and its subdomains always name the loopback interface (RFC 6761 §6.3). */
function isLocalhostName(hostname: string): boolean {
  const name = hostname.replace(/\.$/, '').toLowerCase();
  return name === 'localhost' || name.endsWith('.localhost');
}

function refuse(problem: CallbackUrlProblem): CallbackUrlCheck {
  return { ok: false, problem, message: MESSAGES[problem] };
}

/**
 * Checks a callback URL. Always: absolute http(s) URL of visible ASCII, at most 2048 characters,
 * no credentials, no fragment. In production additionally: https only, and no host that is
 * `localhost` or an IP literal in a loopback/private/link-local range. Returns the URL as the
 * WHATWG parser normalises it (what is stored and posted to).
 */
export function checkCallbackUrl(raw: string, options: { production: boolean }): CallbackUrlCheck {
  if (raw.length > CALLBACK_URL_MAX_LENGTH) return refuse('too_long');
  if (!/^[\x21-\x7E]+$/.test(raw)) return refuse('not_ascii');
  // `#` can only start a fragment; `new URL` drops an empty one, so look at the raw text.
  if (raw.includes('#')) return refuse('fragment');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return refuse('malformed');
  }
  const allowed = options.production ? ['https:'] : ['https:', 'http:'];
  if (!allowed.includes(url.protocol)) return refuse('scheme');
  if (url.username !== '' || url.password !== '') return refuse('credentials');
  if (options.production && (isLocalhostName(url.hostname) || isBlockedAddress(url.hostname))) return refuse('private_address');
  if (url.href.length > CALLBACK_URL_MAX_LENGTH) return refuse('too_long');
  return { ok: true, url: url.href };
}

/** The host of a callback URL, for logs: the path and query may carry the tenant's own tokens. */
export function callbackHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid)';
  }
}
