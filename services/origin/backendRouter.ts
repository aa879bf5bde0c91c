import type { BlobStore, Digest } from '../../domain';
import { ShoalError, blobObjectName, isShoalError, orThrow, parseObjectPrefix } from '../../domain';

/** One backend as an origin uses it: the store, the object-name prefix, and the name. */
export type Backend = {
  /** The backend's name: the write-back job target and `BlobPersisted.backend`. */
  readonly name: string;
  readonly store: BlobStore;
  /** Read-only (another registry, a read-only HTTP server): no write-back, no pushes. */
  readonly readOnly: boolean;
  /** The object name of a blob in this backend (with its prefix). */
  readonly objectName: (digest: Digest) => string;
};

/** A namespace rule: repositories whose whole name matches `namespace` use `store`. */
export type BackendRoute = {
  /** A regular expression matched against the whole repository name, e.g. `library/.*`. */
  readonly namespace: string;
  readonly store: BlobStore;
  /** Object name prefix in this backend, e.g. `cluster-a/`. */
  readonly prefix?: string;
};

/**
 * Picks the backend of a repository: the first route whose namespace matches the whole
 * repository name, else the default backend (Kraken's model). Pushes carry their repository
 * from the proxy to the origin and into its write-back job (the job's target is the backend's
 * name), so each push lands in the backend its repository names.
 */
export type BackendRouter = {
  /** The catch-all backend. */
  readonly fallback: Backend;
  /** Every distinct backend, routes first, the default last. */
  readonly all: readonly Backend[];
  /** The backend a repository's blobs are written to and read from (scoped to the repo). */
  forRepo(repo: string): Backend;
  /** A backend by name (write-back jobs name their target), unscoped. */
  byName(name: string): Backend | undefined;
};

const toBackend = (store: BlobStore, prefix: string): Backend => {
  const normalised = orThrow(parseObjectPrefix(prefix));
  return {
    name: store.name,
    store,
    readOnly: store.readOnly === true,
    objectName: (digest) => blobObjectName(digest, normalised),
  };
};

/** Compiles a namespace pattern anchored at both ends; a bad pattern is a config error. */
export const compileNamespace = (pattern: string): RegExp => {
  try {
    return new RegExp(`^(?:${pattern})$`);
  } catch (error) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `backend namespace "${pattern}" is not a valid regular expression: ${(error as Error).message}`,
    );
  }
};

export const createBackendRouter = (
  fallback: { store: BlobStore; prefix?: string },
  routes: readonly BackendRoute[] = [],
): BackendRouter => {
  const compiled = routes.map((route) => ({
    pattern: compileNamespace(route.namespace),
    backend: toBackend(route.store, route.prefix ?? ''),
  }));
  const fallbackBackend = toBackend(fallback.store, fallback.prefix ?? '');
  const byName = new Map<string, Backend>();
  for (const backend of [...compiled.map((c) => c.backend), fallbackBackend]) {
    const known = byName.get(backend.name);
    if (known !== undefined && known.store !== backend.store) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `two different backends are named "${backend.name}": give each its own name ` +
          '(write-back jobs and BlobPersisted events name the backend)',
      );
    }
    byName.set(backend.name, backend);
  }
  const scoped = new Map<string, Backend>();
  return {
    fallback: fallbackBackend,
    all: [...byName.values()],
    forRepo: (repo) => {
      const backend = compiled.find((c) => c.pattern.test(repo))?.backend ?? fallbackBackend;
      const { forRepository } = backend.store;
      if (forRepository === undefined) return backend;
      const key = `${backend.name}\u0000${repo}`;
      let view = scoped.get(key);
      if (view === undefined) {
        view = { ...backend, store: forRepository.call(backend.store, repo) };
        if (scoped.size > 10_000) scoped.clear();
        scoped.set(key, view);
      }
      return view;
    },
    byName: (name) => byName.get(name),
  };
};

/**
 * Checks every backend (`BlobStore.check`) at start and again every `everyMs` while one
 * fails: a wrong credential or a missing bucket makes the origin not ready and is logged with
 * its cause, never a crash; an unreachable backend is logged and leaves the origin ready;
 * once the backend answers, readiness returns by itself.
 */
export const watchBackends = (
  backends: readonly Backend[],
  logger: { error: (obj: object, msg: string) => void; info: (obj: object, msg: string) => void },
  everyMs = 10_000,
): { problem: () => string | undefined; stop: () => void; settled: Promise<void> } => {
  const failing = new Map<string, string>();
  const unreachable = new Map<string, string>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const run = async () => {
    await Promise.all(
      backends.map(async (backend) => {
        if (backend.store.check === undefined) return;
        try {
          await backend.store.check();
          if (failing.delete(backend.name) || unreachable.delete(backend.name)) {
            logger.info({ backend: backend.name }, 'storage backend is usable again');
          }
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          const known = failing.get(backend.name) ?? unreachable.get(backend.name);
          if (known !== message) {
            logger.error(
              { backend: backend.name, err: error },
              `storage backend unusable: ${message}`,
            );
          }
          // Unreachable is weathered (uploads land on origins, write-back retries); a config
          // the backend refuses (credentials, bucket) needs a person: the origin is not ready.
          if (isShoalError(error, 'STORAGE_UNAVAILABLE')) {
            unreachable.set(backend.name, message);
            failing.delete(backend.name);
          } else {
            failing.set(backend.name, message);
            unreachable.delete(backend.name);
          }
          return;
        }
      }),
    );
    if (!stopped && failing.size + unreachable.size > 0) {
      timer = setTimeout(() => void run(), everyMs);
      timer.unref();
    }
  };
  const settled = run();
  return {
    problem: () =>
      failing.size === 0
        ? undefined
        : [...failing].map(([name, message]) => `backend ${name}: ${message}`).join('; '),
    stop: () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
    settled,
  };
};
