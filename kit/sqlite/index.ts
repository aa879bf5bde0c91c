export * from './sqliteErrors';
export * from './sqliteFile';
