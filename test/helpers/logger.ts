import { pino, type Logger } from 'pino';

/** A logger that writes nowhere but into `lines` (one parsed object per line), from `level` up. */
export function capturingLogger(lines: Record<string, unknown>[] = [], level = 'warn'): Logger {
  return pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
}
