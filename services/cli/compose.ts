import type { EventLog, Lease, ProjectionStore } from '../../domain';
import type { KafkaClientOptions } from '../../adapters/eventlog';
import {
  createKafkaGroupLease,
  kafkaMinSessionMs,
  openEventStoreDbEventLog,
  openKafkaEventLog,
  openSqliteEventLog,
} from '../../adapters/eventlog';
import { openSqliteProjectionStore } from '../../adapters/projection-store/sqlite/sqliteProjectionStore';
import type { DataDir } from '../shared/dataDir';
import { openDataDir } from '../shared/dataDir';
import type { LogConfig } from '../shared/logConfig';
import type { Logger } from '../shared/logger';

/** How to reach the Kafka brokers of the log's configuration. */
const kafkaClientOf = (kafka: LogConfig['kafka'], logger?: Logger): KafkaClientOptions => ({
  brokers: kafka.brokers,
  clientId: kafka.clientId,
  connectionTimeoutMs: kafka.connectionTimeoutMs,
  requestTimeoutMs: kafka.requestTimeoutMs,
  retries: kafka.retries,
  ssl: kafka.ssl,
  ...(kafka.sasl === undefined ? {} : { sasl: { ...kafka.sasl } }),
  ...(logger === undefined ? {} : { logger: logger.child({ module: 'kafka' }) }),
});

/**
 * Who runs the replicator among processes on one log, when the data directory's file cannot
 * tell (it covers one host): on a Kafka log, membership of the group
 * `shoal-replicator.<cluster>` (see `createKafkaGroupLease`), its session the lease time (at
 * least the broker's 6 s). Otherwise undefined: the replicator takes `<dataDir>/replicator.lock`.
 */
export const replicatorLeaseFor = (
  config: LogConfig,
  options: { cluster: string; leaseMs: number; logger?: Logger },
): Lease | undefined =>
  config.adapter === 'kafka'
    ? createKafkaGroupLease({
        ...kafkaClientOf(config.kafka, options.logger),
        clientId: `${config.kafka.clientId}-replicator`,
        topic: config.kafka.topic,
        groupId: `shoal-replicator.${options.cluster}`,
        sessionTimeoutMs: Math.max(kafkaMinSessionMs, options.leaseMs),
      })
    : undefined;

/**
 * Who holds the replicator's lease now (for a status reader on any host): on a Kafka log, the
 * member of the group `shoal-replicator.<cluster>` the coordinator gave it to, asked without
 * joining; undefined when none does, or when the log is not Kafka (the lease is then
 * `<dataDir>/replicator.lock`, read where it is).
 */
export const replicatorLeaseHolder = async (
  config: LogConfig,
  cluster: string,
): Promise<{ pid: number; host: string } | undefined> => {
  const lease = replicatorLeaseFor(config, { cluster, leaseMs: kafkaMinSessionMs });
  if (lease === undefined) return undefined;
  try {
    return await lease.holder();
  } finally {
    await lease.release();
  }
};

/**
 * The log named by `config.adapter`: the SQLite file in the data directory (the default), or
 * the cluster's Kafka topic or EventStoreDB streams. Kafka and EventStoreDB are reached (and
 * the topic checked or created) before this resolves, so a bad address fails at start.
 */
export const openEventLog = async (
  config: LogConfig,
  dataDir: DataDir,
  logger?: Logger,
): Promise<EventLog> => {
  switch (config.adapter) {
    case 'kafka':
      return openKafkaEventLog({
        ...kafkaClientOf(config.kafka, logger),
        topic: config.kafka.topic,
        replicationFactor: config.kafka.replicationFactor,
        createTopic: config.kafka.createTopic,
        stallTimeoutMs: config.kafka.stallTimeoutMs,
      });
    case 'eventstoredb':
      return openEventStoreDbEventLog({
        connectionString: config.eventstoredb.connectionString,
        streamPrefix: config.eventstoredb.streamPrefix,
      });
    case 'sqlite':
      return openSqliteEventLog(dataDir.logPath, {
        durability: config.sqlite.durability,
        pollIntervalMs: config.sqlite.pollIntervalMs,
      });
  }
};

/**
 * The composition root's choice of adapters: the log named by config and the projection
 * store, both in the data directory. Services receive the ports, never the adapters.
 */
export type LocalState = {
  readonly dataDir: DataDir;
  readonly log: EventLog;
  readonly store: ProjectionStore;
  readonly close: () => Promise<void>;
};

/**
 * Projections are rebuilt from the log, so their commits need not reach the disk before the
 * runner goes on: `normal` durability syncs at checkpoints only. A commit with `full` cost an
 * fsync on the event loop per batch — three runners, every push, ~250 ms of waiting per push
 * on a slow disk and seconds while GC appended removals. After a power loss a store may be
 * behind the log; its runner re-applies from the checkpoint that was lost with the state.
 */
export const projectionStoreOptions = { durability: 'normal' } as const;

export const openLocalState = async (options: {
  dataDir: string;
  log: LogConfig;
  /** Create the data directory when it does not exist (services and write commands). */
  create: boolean;
  /** Where the log adapter's client logs (Kafka's); default: errors to stderr. */
  logger?: Logger;
}): Promise<LocalState> => {
  const dataDir = openDataDir(options.dataDir, { create: options.create });
  const log = await openEventLog(options.log, dataDir, options.logger);
  let store: ProjectionStore;
  try {
    store = openSqliteProjectionStore(dataDir.projectionsPath, projectionStoreOptions);
  } catch (error) {
    await log.close();
    throw error;
  }
  return {
    dataDir,
    log,
    store,
    close: async () => {
      await store.close();
      await log.close();
    },
  };
};
