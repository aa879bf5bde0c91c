export type { HttpBackendConfig, HttpBlobStoreOptions } from './httpBlobStore';
export { HttpBackendConfigSchema, createHttpBlobStore } from './httpBlobStore';
