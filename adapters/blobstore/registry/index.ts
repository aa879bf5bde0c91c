export type {
  RegistryBackendConfig,
  RegistryBlobStore,
  RegistryBlobStoreConfig,
  RegistryBlobStoreDeps,
  RepositoryRegistryBlobStore,
  UpstreamManifest,
} from './registryBlobStore';
export { RegistryBackendConfigSchema, createRegistryBlobStore } from './registryBlobStore';
