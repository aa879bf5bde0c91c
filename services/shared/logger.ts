import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** JSON logs (pino). Services log to stdout; the CLI logs to stderr so stdout stays data. */
export const createLogger = (options: {
  level?: LogLevel;
  name?: string;
  destination?: 1 | 2;
}): Logger =>
  pino(
    { level: options.level ?? 'info', name: options.name ?? 'shoal', base: { pid: process.pid } },
    pino.destination({ dest: options.destination ?? 1, sync: false }),
  );

export const silentLogger = (): Logger => pino({ level: 'silent' });
