import { pino, stdSerializers, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

const CENSOR = '[redacted]';

/**
 * Fields that must never be written even if someone logs a whole object by mistake (the code
 * itself logs masked destinations only): in a logged object and in the objects it holds.
 */
const SECRET_FIELDS = new Set(['code', 'to', 'text', 'apiKey', 'secret', 'codeMac', 'codeSealed']);

/** Credentials in a `headers` object, or a request's (`req.headers`). */
const SECRET_HEADERS = new Set(['authorization', 'x-api-key', 'ycloud-signature']);

type Fields = Record<string, unknown>;

function isPlainObject(value: unknown): value is Fields {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** `fields` itself when nothing in it is secret; otherwise a copy with those values censored. */
function censorFields(fields: Fields, secret: (key: string, value: unknown) => unknown): Fields {
  let copy: Fields | undefined;
  for (const key in fields) {
    if (!Object.hasOwn(fields, key)) continue;
    const value = fields[key];
    const censored = secret(key, value);
    if (censored !== value) (copy ??= { ...fields })[key] = censored;
  }
  return copy ?? fields;
}

const censorHeaders = (headers: Fields) => censorFields(headers, (key, value) => (SECRET_HEADERS.has(key.toLowerCase()) ? CENSOR : value));

/** One level down: the secret fields, and the credentials of a `headers` object (`req.headers`). */
function censorChild(key: string, value: unknown): unknown {
  if (SECRET_FIELDS.has(key)) return CENSOR;
  if (key === 'headers' && isPlainObject(value)) return censorHeaders(value);
  return value;
}

/** A line's plain-object fields with their secret fields censored; its own are its serializers' job. */
const censorChildren = (fields: Fields) => censorFields(fields, (_key, value) => (isPlainObject(value) ? censorFields(value, censorChild) : value));

const censored = () => CENSOR;

/**
 * How every Kurir logger (and a test's, writing to its own sink) censors secrets: the secret
 * fields of a line or of a child logger's bindings, the same fields in the plain objects a line
 * holds, header credentials in `headers` and `req.headers`, and the fields of a logged error.
 * Copy-on-write: the caller's objects are never changed.
 *
 * This replaces pino's `redact`: with the `*.field` wildcards this needs, it ran every value of
 * every line (and its message) through a redactor that parses each of its paths again per call,
 * more than half the cost of writing a line (BENCHMARKS.md, run N). A serializer is looked up by key
 * for every field anyway, and covers child bindings too.
 */
export const CENSORING: Pick<LoggerOptions, 'formatters' | 'serializers'> = {
  formatters: { log: censorChildren },
  serializers: {
    ...Object.fromEntries([...SECRET_FIELDS].map((field) => [field, censored])),
    headers: (headers: unknown) => (isPlainObject(headers) ? censorHeaders(headers) : headers),
    err: (error: unknown) => {
      // A plain copy of the error's fields (on a prototype of pino's own, hence not isPlainObject).
      const serialized = stdSerializers.err(error as Error) as unknown;
      return serialized !== null && typeof serialized === 'object' ? censorFields(serialized as Fields, censorChild) : serialized;
    },
  },
};

export function createLogger(options: { level: string; pretty: boolean; name?: string }): Logger {
  return pino({
    level: options.level,
    ...(options.name === undefined ? {} : { name: options.name }),
    ...CENSORING,
    ...(options.pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } }
      : {}),
  });
}
