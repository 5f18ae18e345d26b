import { z } from 'zod';

import type { LookupResult, ReceiptStatus, SentLookup } from '../provider.js';
import type { HttpTransport } from '../../http/keep-alive-transport.js';
import { callYCloud } from './ycloud-http.js';

/**
 * Finds a message we may have sent among YCloud's records. Only SMS can be searched: YCloud
 * lists SMS records by creation time (`GET /sms`), while WhatsApp messages and emails can only be
 * retrieved by the id YCloud gave us — exactly what a lost answer did not give us.
 */

export interface LookupOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
  transport: HttpTransport;
  mapStatus(status: string | undefined): ReceiptStatus | undefined;
}

/** YCloud's clock against ours: the window is widened by this on both sides. */
export const CLOCK_SKEW_MS = 30_000;
/** The spec's maximum page size. */
const PAGE_SIZE = 100;
/** Beyond this many records in the window the answer is `unknown` rather than a long crawl. */
export const MAX_PAGES = 10;

const smsPageSchema = z.object({
  length: z.number().int().nonnegative(),
  items: z
    .array(z.object({ id: z.string().min(1), externalId: z.string().optional().catch(undefined), status: z.string().optional().catch(undefined) }))
    .default([]),
});

export async function lookupSent(query: SentLookup, options: LookupOptions, signal?: AbortSignal): Promise<LookupResult> {
  if (query.channel !== 'sms') return { kind: 'unknown', reason: `YCloud offers no search of ${query.channel} messages by externalId` };
  const from = new Date(query.sentBetween.from - CLOCK_SKEW_MS).toISOString();
  const to = new Date(query.sentBetween.to + CLOCK_SKEW_MS).toISOString();
  for (let page = 1; page <= MAX_PAGES; page += 1) {
    const params = new URLSearchParams({
      page: String(page),
      limit: String(PAGE_SIZE),
      'filter.createTime.gte': from,
      'filter.createTime.lte': to,
    });
    const body = smsPageSchema.safeParse(await getJson(`${options.baseUrl}/sms?${params}`, options, signal));
    if (!body.success) return { kind: 'unknown', reason: 'unreadable SMS list' };
    const match = body.data.items.find((item) => item.externalId === query.externalId);
    if (match !== undefined) {
      return { kind: 'found', sent: { providerMessageId: match.id, status: options.mapStatus(match.status) ?? 'accepted' } };
    }
    if (body.data.length < PAGE_SIZE) return { kind: 'absent' };
  }
  return { kind: 'unknown', reason: `more than ${MAX_PAGES * PAGE_SIZE} SMS in the window` };
}

async function getJson(url: string, options: LookupOptions, signal: AbortSignal | undefined): Promise<unknown> {
  const reply = await callYCloud(
    'sms',
    url,
    { method: 'GET', headers: { 'X-API-Key': options.apiKey, Accept: 'application/json' }, timeoutMs: options.timeoutMs, signal },
    options.transport,
  );
  try {
    return JSON.parse(reply.text) as unknown;
  } catch {
    return undefined;
  }
}
