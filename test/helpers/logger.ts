import { pino, type Logger } from 'pino';
import { CENSORING } from '../../common/observability/logger.js';

/** A logger that writes nowhere but into `lines` (one parsed object per line), from `level` up. */
export function capturingLogger(lines: Record<string, unknown>[] = [], level = 'warn'): Logger {
  return pino({ level, ...CENSORING }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
}

/** A logger censoring as Kurir's do, keeping every line it writes as written (JSON text) in `lines`. */
export function recordingLogger(level = 'debug'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level, ...CENSORING }, { write: (chunk: string) => void lines.push(...chunk.split('\n').filter((line) => line !== '')) });
  return { logger, lines };
}
