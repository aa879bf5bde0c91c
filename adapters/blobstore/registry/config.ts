import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { BlobStore, Digest } from '../../../domain';

/** The `registry` backend's configuration; every field has a default. */
export const RegistryBackendConfigSchema = Type.Object(
  {
    url: Type.String({
      default: '',
      description: 'base URL of the upstream OCI registry, e.g. http://127.0.0.1:5001; must be set',
    }),
    username: Type.String({
      default: '',
      description:
        'user for Basic auth, or for the token request of a Bearer challenge; empty: anonymous',
    }),
    password: Type.String({
      default: '',
      description: 'password of that user (never logged)',
    }),
    realmHosts: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description:
        'other hosts (host[:port]) whose token endpoint may receive the credentials when the ' +
        "upstream's challenge names a realm there (e.g. a hub's separate auth host); no other " +
        'host ever does',
    }),
    stripPrefix: Type.String({
      default: '',
      description:
        'leading path removed from the Shoal repository to name the upstream one: with hub/, ' +
        'Shoal repository hub/library/alpine reads library/alpine upstream; empty: same name',
    }),
    timeoutMs: Type.Integer({
      default: 30_000,
      minimum: 1,
      description:
        'longest pause of the upstream: connecting, answering, and between bytes of a body ' +
        '(a reader slow to take the bytes does not count)',
    }),
    maxAttempts: Type.Integer({
      default: 3,
      minimum: 1,
      description:
        'tries per request when the upstream cannot be reached or answers 5xx, 429 or 408 ' +
        '(with a short backoff); a body already being streamed is never retried',
    }),
    insecure: Type.Boolean({
      default: false,
      description: 'accept any TLS certificate from an https upstream (tests only)',
    }),
    caFile: Type.String({
      default: '',
      description:
        'PEM CA bundle an https upstream is checked against (a private CA); empty: the ' +
        'system roots',
    }),
  },
  { default: {} },
);

export type RegistryBackendConfig = Static<typeof RegistryBackendConfigSchema>;

export type RegistryBlobStoreConfig = RegistryBackendConfig & {
  /** The backend's name in `BlobPersisted` and in messages (default `registry`). */
  readonly name?: string;
};

export type RegistryBlobStoreDeps = {
  /** Milliseconds since the epoch, for bearer token expiry (default `Date.now`). */
  readonly now?: () => number;
};

/** A manifest read from the upstream, its digest verified. */
export type UpstreamManifest = {
  readonly bytes: Buffer;
  /** The `Content-Type` the upstream sent, else the manifest's `mediaType` field, else ''. */
  readonly mediaType: string;
  /** The digest of `bytes`: the reference when it was one, else `Docker-Content-Digest`. */
  readonly digest: Digest;
};

/** The store of one repository: reads `/v2/<upstream repository>/…`. */
export type RepositoryRegistryBlobStore = BlobStore & {
  readonly readOnly: true;
  /** The upstream's name of this repository (the Shoal name less `stripPrefix`). */
  readonly upstreamRepository: string;
  /** A manifest by tag or digest, verified; `MANIFEST_UNKNOWN` when the upstream has none. */
  fetchManifest(reference: string): Promise<UpstreamManifest>;
  /**
   * The digest a tag points at upstream, from a `HEAD` (its `Docker-Content-Digest`; a `GET`
   * when the upstream sends none). `MANIFEST_UNKNOWN` when the upstream has no such tag.
   */
  headManifest(tag: string): Promise<Digest>;
};

export type RegistryBlobStore = Omit<BlobStore, 'forRepository'> & {
  readonly readOnly: true;
  check(): Promise<void>;
  forRepository(repo: string): RepositoryRegistryBlobStore;
  /** `forRepository(repo).fetchManifest(reference)`. */
  fetchManifest(repo: string, reference: string): Promise<UpstreamManifest>;
  /** Closes idle keep-alive connections (they never keep the process alive). */
  close(): void;
};
