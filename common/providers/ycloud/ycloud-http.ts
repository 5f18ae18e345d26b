import type { Channel } from '../../domain/channel.js';
import type { HttpReply, HttpRequest, HttpTransport } from '../../http/keep-alive-transport.js';
import { classifyHttpError, classifyTransportFailure } from './ycloud-errors.js';

/**
 * One exchange with YCloud: the reply when its status is 2xx, otherwise a classified
 * {@link ProviderError} — for the exchange that failed (timeout, abort, network) as for an error
 * answer. Shared by the sends and the SMS lookup, so both read failures the same way.
 */
export async function callYCloud(channel: Channel, url: string, request: HttpRequest, transport: HttpTransport): Promise<HttpReply> {
  let reply: HttpReply;
  try {
    reply = await transport(url, request);
  } catch (error) {
    throw classifyTransportFailure(channel, error);
  }
  if (reply.status < 200 || reply.status > 299) {
    throw classifyHttpError({
      channel,
      httpStatus: reply.status,
      bodyText: reply.text,
      retryAfterHeader: reply.header('retry-after') ?? null,
      requestIdHeader: reply.header('ycloud-request-id') ?? null,
      nowMs: Date.now(),
    });
  }
  return reply;
}
