export type {
  RegistryBackendConfig,
  RegistryBlobStore,
  RegistryBlobStoreConfig,
  RegistryBlobStoreDeps,
  RepositoryRegistryBlobStore,
  UpstreamManifest,
} from './config';
export { RegistryBackendConfigSchema } from './config';
export { createRegistryBlobStore } from './registryBlobStore';
