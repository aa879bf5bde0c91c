export * from './events';
export * from './blobStore';
