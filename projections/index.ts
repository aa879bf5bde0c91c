export * from './buildIndex';
export * from './tagHistory';
export * from './blobIndex';
export * from './placement';
export * from './manifestIndex';
export * from './replication';
export * from './allProjections';
