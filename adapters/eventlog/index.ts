export type { MemoryEventLogOptions } from './memory/memoryEventLog';
export { createMemoryEventLog } from './memory/memoryEventLog';
export type { OpenSqliteEventLogOptions, SqliteEventLogOptions } from './sqlite/sqliteEventLog';
export {
  createSqliteEventLog,
  defaultPollIntervalMs,
  openSqliteEventLog,
} from './sqlite/sqliteEventLog';
export type { KafkaClientOptions, KafkaLogSink } from './kafka/kafkaClient';
export { createKafkaClient, kafkaMinSessionMs } from './kafka/kafkaClient';
export type { KafkaEventLogOptions, OpenKafkaEventLogOptions } from './kafka/kafkaEventLog';
export { createKafkaEventLog, defaultKafkaTopic, openKafkaEventLog } from './kafka/kafkaEventLog';
export type {
  EventStoreDbEventLogOptions,
  OpenEventStoreDbEventLogOptions,
} from './eventstoredb/eventStoreDbEventLog';
export {
  createEventStoreDbEventLog,
  openEventStoreDbEventLog,
} from './eventstoredb/eventStoreDbEventLog';
export type { KafkaGroupLeaseOptions } from './kafka/kafkaGroupLease';
export { createKafkaGroupLease } from './kafka/kafkaGroupLease';
