export * from './buildIndex';
export * from './tagHistory';
export * from './blobIndex';
export * from './registry';
