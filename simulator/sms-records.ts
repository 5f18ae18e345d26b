/**
 * The simulator's side of YCloud's `GET /v2/sms` ("List SMS records"): every accepted SMS, with
 * its latest status, filterable by creation time and id and paged like YCloud's `SmsPage`. Kurir
 * uses it to find out whether an SMS it is unsure about (its worker died mid-call, or the call
 * timed out) was in fact accepted, before it sends that SMS again.
 */

type JsonObject = Record<string, unknown>;

/** Query parameters of `GET /v2/sms`, as the spec names them. */
export interface SmsListQuery {
  page: number;
  limit: number;
  includeTotal: boolean;
  createdFrom: number | undefined;
  createdTo: number | undefined;
  id: string | undefined;
}

export type ParsedSmsListQuery = { ok: true; query: SmsListQuery } | { ok: false; message: string };

const DAY_MS = 24 * 3600 * 1000;

/** Validates the query string against the spec's bounds (page 1–100, limit 1–100, date-times). */
export function parseSmsListQuery(params: URLSearchParams, now: number): ParsedSmsListQuery {
  const page = integerParam(params, 'page', 1);
  const limit = integerParam(params, 'limit', 10);
  if (page === undefined || page < 1 || page > 100) return { ok: false, message: 'page must be an integer between 1 and 100.' };
  if (limit === undefined || limit < 1 || limit > 100) return { ok: false, message: 'limit must be an integer between 1 and 100.' };
  const from = timeParam(params, 'filter.createTime.gte');
  const to = timeParam(params, 'filter.createTime.lte');
  if (from === null) return { ok: false, message: 'filter.createTime.gte must be a date-time.' };
  if (to === null) return { ok: false, message: 'filter.createTime.lte must be a date-time.' };
  return {
    ok: true,
    query: {
      page,
      limit,
      includeTotal: params.get('includeTotal') === 'true',
      // The spec's default: one day ago from now.
      createdFrom: from ?? now - DAY_MS,
      createdTo: to,
      id: params.get('filter.id') ?? undefined,
    },
  };
}

/** Accepted SMS objects in the order they were created. */
export class SmsRecords {
  private readonly records: { createdAt: number; sms: JsonObject }[] = [];

  /** Keeps a reference: later status changes made to `sms` show in the list. */
  add(sms: JsonObject, createdAt: number): void {
    this.records.push({ createdAt, sms });
  }

  /** One `SmsPage`, newest first like YCloud's listings. */
  list(query: SmsListQuery): JsonObject {
    // `filter.id` makes the other filters ignored, as the spec says.
    const matching = this.records.filter(({ createdAt, sms }) =>
      query.id !== undefined
        ? sms.id === query.id
        : createdAt >= (query.createdFrom ?? -Infinity) && createdAt <= (query.createdTo ?? Infinity),
    );
    matching.reverse();
    const offset = (query.page - 1) * query.limit;
    const items = matching.slice(offset, offset + query.limit).map(({ sms }) => ({ ...sms }));
    return {
      offset,
      limit: query.limit,
      length: items.length,
      ...(query.includeTotal ? { total: matching.length } : {}),
      items,
    };
  }
}

function integerParam(params: URLSearchParams, name: string, fallback: number): number | undefined {
  const raw = params.get(name);
  if (raw === null) return fallback;
  return /^\d{1,4}$/.test(raw) ? Number(raw) : undefined;
}

/** `undefined` when absent, `null` when not a date-time. */
function timeParam(params: URLSearchParams, name: string): number | undefined | null {
  const raw = params.get(name);
  if (raw === null) return undefined;
  const parsed = Date.parse(raw);
  return Number.isNaN(parsed) ? null : parsed;
}
