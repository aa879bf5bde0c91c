export * from './sqliteErrors';
export * from './sqliteFile';
export * from './processLock';
