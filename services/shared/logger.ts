import pino from 'pino';
import type { DestinationStream, Logger, LoggerOptions } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * Fields that hold secrets wherever they appear (one or two levels down: a request's headers,
 * a backend's config, an error's options): logged as `[redacted]`.
 */
const secretKeys = [
  'authorization',
  'Authorization',
  'password',
  'token',
  'secretAccessKey',
  'sessionToken',
  'credentials',
  'credential',
  'cookie',
  'set-cookie',
];
const redactPaths = secretKeys.flatMap((key) => {
  const field = /^[A-Za-z]+$/.test(key) ? key : `["${key}"]`;
  const at = (prefix: string) =>
    field.startsWith('[') ? `${prefix}${field}` : `${prefix}.${field}`;
  return [
    field.startsWith('[') ? `*${field}` : field,
    at('*'),
    at('*.*'),
    at('*.headers'),
    at('*.*.headers'),
  ];
});

/** `Basic …` and `Bearer …` credentials inside any text (an error message, a URL). */
const credentialPattern = /\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]{6,}/gi;
/** Passwords in URLs: `https://user:secret@host`. */
const urlPasswordPattern = /(\/\/[^/\s:@]+:)[^/\s@]+@/g;

/** A text with the credentials it may carry replaced by `[redacted]`. */
export const scrubSecrets = (text: string): string =>
  text.replace(credentialPattern, '$1 [redacted]').replace(urlPasswordPattern, '$1[redacted]@');

/**
 * Pino's options for every Shoal logger: secret fields redacted by path, and credentials
 * scrubbed from messages and errors (an upstream's answer quoted in an error may carry one).
 */
export const loggerOptions = (options: { level?: LogLevel; name?: string }): LoggerOptions => ({
  level: options.level ?? 'info',
  name: options.name ?? 'shoal',
  base: { pid: process.pid },
  redact: { paths: redactPaths, censor: '[redacted]' },
  serializers: {
    err: (error: Error) => {
      const out = pino.stdSerializers.err(error) as unknown as Record<string, unknown>;
      for (const key of ['message', 'stack']) {
        if (typeof out[key] === 'string') out[key] = scrubSecrets(out[key] as string);
      }
      return out;
    },
  },
  hooks: {
    logMethod(args, method) {
      const scrubbed = args.map((arg: unknown) =>
        typeof arg === 'string' ? scrubSecrets(arg) : arg,
      ) as Parameters<typeof method>;
      method.apply(this, scrubbed);
    },
  },
});

export const logLevels: readonly LogLevel[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

/** `json`: one pino JSON object a line (for machines); `pretty`: a readable line (terminals). */
export type LogFormat = 'json' | 'pretty';

/**
 * pino logs. Services log to stdout; the CLI logs to stderr so stdout stays data. A `sync`
 * logger (`pretty` always is) writes each line before going on, so what a command prints after
 * a log line comes after it. `onError` hears the destination's write errors (a closed pipe:
 * EPIPE) instead of the process crashing on them.
 */
export const createLogger = (options: {
  level?: LogLevel;
  name?: string;
  /** A file descriptor (1 or 2), or a stream (tests). */
  destination?: 1 | 2 | DestinationStream;
  format?: LogFormat;
  sync?: boolean;
  onError?: (error: NodeJS.ErrnoException) => void;
}): Logger => {
  const format = options.format ?? 'json';
  const target = options.destination ?? 1;
  let destination: DestinationStream;
  if (typeof target === 'number') {
    const boom = pino.destination({
      dest: target,
      sync: format === 'pretty' || options.sync === true,
    });
    boom.on('error', (error: NodeJS.ErrnoException) => options.onError?.(error));
    destination = boom;
  } else {
    destination = target;
  }
  const settings = loggerOptions(options);
  if (format === 'json') return pino(settings, destination);
  return pino(
    settings,
    pinoPretty({
      destination,
      sync: true,
      colorize: pinoPretty.isColorSupported && process.env.NO_COLOR === undefined,
      singleLine: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,name,role',
      messageFormat: '{if role}{role}: {end}{msg}',
    }),
  );
};

export const silentLogger = (): Logger => pino({ level: 'silent' });
