export type { GcsBackendConfig, GcsBlobStoreOptions } from './gcsBlobStore';
export { GcsBackendConfigSchema, createGcsBlobStore } from './gcsBlobStore';
