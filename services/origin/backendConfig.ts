import { join } from 'node:path';
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { BlobStore } from '../../domain';
import { ShoalError } from '../../domain';
import { createFilesystemBlobStore } from '../../adapters/blobstore/filesystem';
import {
  RegistryBackendConfigSchema,
  createRegistryBlobStore,
} from '../../adapters/blobstore/registry';
import { GcsBackendConfigSchema, createGcsBlobStore } from '../../adapters/blobstore/gcs';
import { HttpBackendConfigSchema, createHttpBlobStore } from '../../adapters/blobstore/http';
import { S3BackendConfigSchema, createS3BlobStore } from '../../adapters/blobstore/s3';
import type { BackendRoute } from './backendRouter';
import { compileNamespace } from './backendRouter';

export const backendTypes = ['filesystem', 's3', 'gcs', 'http', 'registry'] as const;
export type BackendType = (typeof backendTypes)[number];

/**
 * One storage backend: its type, the name events record, an object-name prefix, and the
 * settings of each type under its own key (only the chosen type's are read). Every setting
 * has a default, so `SHOAL_BACKEND_S3_BUCKET=…` style variables work for the default backend.
 */
export const BackendConfigSchema = Type.Object(
  {
    type: Type.Union(
      backendTypes.map((t) => Type.Literal(t)),
      {
        default: 'filesystem',
        description: 'filesystem | s3 | gcs | http | registry (read-only pull-through)',
      },
    ),
    name: Type.String({
      default: '',
      maxLength: 255,
      pattern: '^[A-Za-z0-9._-]*$',
      description:
        'the backend as recorded in BlobPersisted and write-back jobs (empty: its type); ' +
        'keep it stable: queued write-backs find their backend by it',
    }),
    prefix: Type.String({
      default: '',
      description: 'object name prefix, e.g. cluster-a/ to share a bucket',
    }),
    path: Type.String({
      default: '',
      description: 'filesystem backend root; empty: <dataDir>/backend (shared by origins)',
    }),
    s3: S3BackendConfigSchema,
    gcs: GcsBackendConfigSchema,
    http: HttpBackendConfigSchema,
    registry: RegistryBackendConfigSchema,
  },
  { default: {} },
);
export type BackendConfig = Static<typeof BackendConfigSchema>;

/**
 * Namespace routes (Kraken's model): the first entry whose `namespace` regular expression
 * matches the whole repository name picks the backend; unmatched repositories use `backend`.
 */
export const BackendRoutesSchema = Type.Array(
  Type.Object({
    namespace: Type.String({
      minLength: 1,
      description: 'regular expression over the whole repository name, e.g. library/.*',
    }),
    backend: BackendConfigSchema,
  }),
  {
    default: [],
    description: 'namespace → backend routes, first match wins (config file only)',
  },
);

/** The name a backend is recorded under: its configured name, else its type. */
export const backendName = (config: BackendConfig): string =>
  config.name === '' ? config.type : config.name;

/**
 * The BlobStore a backend config names: the composition root's choice of adapter. A
 * filesystem backend without a path lives in `<dataDir>/backend`, shared by the origins of
 * one data directory.
 */
export const createBackendStore = (config: BackendConfig, dataDirRoot: string): BlobStore => {
  const name = backendName(config);
  switch (config.type) {
    case 'filesystem':
      return createFilesystemBlobStore({
        root: config.path === '' ? join(dataDirRoot, 'backend') : config.path,
        name,
      });
    case 's3':
      return createS3BlobStore({ ...config.s3, name });
    case 'gcs':
      return createGcsBlobStore({ ...config.gcs, name });
    case 'http':
      return createHttpBlobStore({ ...config.http, name });
    case 'registry':
      return createRegistryBlobStore({ ...config.registry, name });
  }
};

/**
 * Every backend of an origin config: the default one and the namespace routes, built once
 * per distinct name (two routes may name one backend).
 */
export const createOriginBackends = (
  config: {
    backend: BackendConfig;
    backends: ReadonlyArray<{ namespace: string; backend: BackendConfig }>;
  },
  dataDirRoot: string,
): { backend: BlobStore; routes: BackendRoute[] } => {
  const built = new Map<string, { config: BackendConfig; store: BlobStore }>();
  const storeFor = (backend: BackendConfig, where: string): BlobStore => {
    const name = backendName(backend);
    const known = built.get(name);
    if (known !== undefined) {
      if (JSON.stringify(known.config) !== JSON.stringify(backend)) {
        throw new ShoalError(
          'CONFIG_INVALID',
          `${where}: another backend is named "${name}" with other settings; give it its own name`,
        );
      }
      return known.store;
    }
    const store = createBackendStore(backend, dataDirRoot);
    built.set(name, { config: backend, store });
    return store;
  };
  const routes = config.backends.map((route, i) => {
    compileNamespace(route.namespace);
    return {
      namespace: route.namespace,
      store: storeFor(route.backend, `backends[${i}]`),
      prefix: route.backend.prefix,
    };
  });
  return { backend: storeFor(config.backend, 'backend'), routes };
};
