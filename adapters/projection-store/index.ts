export { createMemoryProjectionStore } from './memory/memoryProjectionStore';
export type {
  OpenSqliteProjectionStoreOptions,
  SqliteProjectionStoreOptions,
} from './sqlite/sqliteProjectionStore';
export {
  createSqliteProjectionStore,
  openSqliteProjectionStore,
} from './sqlite/sqliteProjectionStore';
