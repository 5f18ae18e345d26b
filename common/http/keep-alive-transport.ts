import http from 'node:http';
import https from 'node:https';

/**
 * A small HTTP client over node's own `http`/`https` with keep-alive connection pools, for the
 * calls on the hot path (every provider send, every simulated receipt). `fetch` costs about five
 * times the CPU per call here (its WHATWG streams and the transferable signals of
 * `AbortSignal.timeout()`/`any()`), which made it a fifth of the one-process benchmark.
 */

export interface HttpRequest {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string | Buffer;
  /** Deadline for the whole exchange, the response body included. */
  timeoutMs: number;
  /** Aborting it ends the exchange with {@link HttpAbortedError}. */
  signal?: AbortSignal | undefined;
}

export interface HttpReply {
  status: number;
  /** A response header, lower-cased name; the first value when repeated. */
  header(name: string): string | undefined;
  text: string;
}

export type HttpTransport = (url: string, request: HttpRequest) => Promise<HttpReply>;

/** No complete answer within `timeoutMs`. */
export class HttpTimeoutError extends Error {
  override readonly name = 'HttpTimeoutError';
}

/** The caller's signal aborted the exchange (or was aborted before it began). */
export class HttpAbortedError extends Error {
  override readonly name = 'HttpAbortedError';
  constructor(
    message: string,
    /** False when nothing was sent: the signal had aborted before the request began. */
    readonly requestStarted: boolean,
  ) {
    super(message);
  }
}

/** A reused idle connection was already closed by the server; internal, retried once. */
class StaleConnectionError extends Error {
  override readonly name = 'StaleConnectionError';
  constructor(readonly original: NodeJS.ErrnoException) {
    super(original.message, { cause: original });
  }
}

export interface KeepAliveTransport {
  send: HttpTransport;
  /** Closes the pooled connections (idle ones would not keep the process alive anyway). */
  close(): void;
}

/**
 * @param maxSockets per origin; beyond it requests queue in the pool.
 * @param idleMs how long an idle connection is kept: below the usual 5 s server keep-alive, so we
 *   drop it before the server does (a POST on a connection the server just closed fails, and a
 *   failed send that may have gone out is a send in doubt).
 */
export function createKeepAliveTransport(options: { maxSockets?: number; idleMs?: number } = {}): KeepAliveTransport {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 128, timeout: options.idleMs ?? 4000 };
  const agents = { 'http:': new http.Agent(agentOptions), 'https:': new https.Agent(agentOptions) };

  const send: HttpTransport = async (url, request) => {
    try {
      return await exchange(url, request);
    } catch (error) {
      // The keep-alive race: the server closed an idle connection just as we reused it. It never
      // read the request (nothing came back, not even headers), so one more try on a fresh
      // connection is safe — the pattern node's documentation gives for `reusedSocket`.
      if (error instanceof StaleConnectionError) return await exchange(url, request);
      throw error;
    }
  };

  const exchange: HttpTransport = (url, request) =>
    new Promise<HttpReply>((resolve, reject) => {
      if (request.signal?.aborted === true) {
        reject(new HttpAbortedError('aborted before the request was sent', false));
        return;
      }
      const target = new URL(url);
      const client = target.protocol === 'https:' ? https : http;
      const agent = target.protocol === 'https:' ? agents['https:'] : agents['http:'];
      const headers: Record<string, string | number> = { ...request.headers };
      if (request.body !== undefined) headers['content-length'] = Buffer.byteLength(request.body);

      let settled = false;
      const finish = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.signal?.removeEventListener('abort', onAbort);
        outcome();
      };
      const req = client.request(target, { method: request.method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          finish(() =>
            resolve({
              status: res.statusCode ?? 0,
              header: (name) => {
                const value = res.headers[name.toLowerCase()];
                return Array.isArray(value) ? value[0] : value;
              },
              text,
            }),
          );
        });
        res.on('error', (error) => finish(() => reject(error)));
      });
      const timer = setTimeout(() => {
        const error = new HttpTimeoutError(`no complete answer within ${request.timeoutMs} ms`);
        finish(() => reject(error));
        req.destroy(error);
      }, request.timeoutMs);
      const onAbort = (): void => {
        const error = new HttpAbortedError('aborted by the caller', true);
        finish(() => reject(error));
        req.destroy(error);
      };
      request.signal?.addEventListener('abort', onAbort, { once: true });
      let answered = false;
      req.on('response', () => {
        answered = true;
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        const stale = req.reusedSocket && !answered && error.code === 'ECONNRESET';
        finish(() => reject(stale ? new StaleConnectionError(error) : error));
      });
      req.end(request.body);
    });

  return {
    send,
    close() {
      agents['http:'].destroy();
      agents['https:'].destroy();
    },
  };
}
