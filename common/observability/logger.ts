import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * One pino logger per process. Redaction is a safety net for fields that must never be written
 * even if someone logs a whole object by mistake; the code itself logs masked destinations only.
 */
export const REDACTED_PATHS = [
  'code',
  '*.code',
  'to',
  '*.to',
  'text',
  '*.text',
  'apiKey',
  '*.apiKey',
  'secret',
  '*.secret',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["ycloud-signature"]',
  'headers.authorization',
  'headers["ycloud-signature"]',
  'codeMac',
  'codeSealed',
];

export function createLogger(options: { level: string; pretty: boolean; name?: string }): Logger {
  return pino({
    level: options.level,
    ...(options.name === undefined ? {} : { name: options.name }),
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(options.pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } }
      : {}),
  });
}
