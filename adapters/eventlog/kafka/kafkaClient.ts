import type { Kafka, KafkaConfig, LogEntry, SASLOptions } from 'kafkajs';
import { Kafka as KafkaClient, logLevel } from 'kafkajs';

/**
 * The shortest group session a broker accepts by default (`group.min.session.timeout.ms`):
 * the log's own consumer group uses it, and the replicator's lease is never shorter.
 */
export const kafkaMinSessionMs = 6000;

/** A structured logger (pino's signature) for kafkajs's own messages. */
export type KafkaLogSink = {
  error(object: object, message: string): void;
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
  debug(object: object, message: string): void;
};

/** How to reach the brokers (the client part of `OpenKafkaEventLogOptions`). */
export type KafkaClientOptions = {
  readonly brokers: readonly string[];
  readonly clientId?: string;
  readonly connectionTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  /**
   * How often kafkajs retries a failed request (connect, metadata, fetch) before the call
   * fails with `LOG_UNAVAILABLE`; default 5, with exponential backoff from 300 ms.
   */
  readonly retries?: number;
  readonly ssl?: boolean;
  readonly sasl?: SASLOptions;
  /** Where kafkajs logs go; default: errors only, to stderr. */
  readonly logger?: KafkaLogSink;
};

const levelNames: Record<number, keyof KafkaLogSink> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

const rebalancing = 'The group is rebalancing, so a rejoin is needed';

/** kafkajs log lines as structured entries of a pino-like logger. */
const sinkCreator =
  (sink: KafkaLogSink) =>
  () =>
  ({ namespace, level, log: entry }: LogEntry) => {
    const { message, timestamp: _timestamp, ...extra } = entry;
    // Retries are bounded on purpose (see `producerRetries`); the log's own batch check
    // makes kafkajs's warning about idempotence after exhausted retries moot.
    if (message.startsWith('Limiting retries for the idempotent producer')) return;
    // A group member's heartbeat answered "rebalancing" is how it learns to rejoin: routine.
    const routine = (extra as { error?: unknown }).error === rebalancing;
    const name = routine ? 'debug' : (levelNames[level] ?? 'info');
    sink[name]({ ...extra, kafka: namespace }, message);
  };

/** The kafkajs client for a configuration (what `openKafkaEventLog` builds). */
export const createKafkaClient = (options: KafkaClientOptions): Kafka => {
  const config: KafkaConfig = {
    brokers: [...options.brokers],
    clientId: options.clientId ?? 'shoal',
    connectionTimeout: options.connectionTimeoutMs ?? 3000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    retry: { retries: options.retries ?? 5 },
    ...(options.ssl === true ? { ssl: true } : {}),
    ...(options.sasl === undefined ? {} : { sasl: options.sasl }),
    logLevel: options.logger === undefined ? logLevel.ERROR : logLevel.INFO,
    ...(options.logger === undefined ? {} : { logCreator: sinkCreator(options.logger) }),
  };
  return new KafkaClient(config);
};
