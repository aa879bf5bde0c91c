import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock, EventLog, Lease, ProjectionStore } from '../../domain';
import { destinationHost } from '../../domain';
import type { BlobAccess } from '../origin/client/blobAccess';
import {
  createBlobAccess,
  ringFromOrigin,
  ringFromPlacement,
} from '../origin/client/createBlobAccess';
import type { Logger } from '../shared/logger';
import type { ClientIdentity } from '../shared/security/clientIdentity';
import type { ReplicationConfig } from './config';
import { credentialsOf } from './config';
import { sourceFromBlobAccess } from './copier';
import { createFileLease } from './lock';
import type { RegistryClient } from '../../adapters/registry/registryClient';
import { createRegistryClient } from '../../adapters/registry/registryClient';
import { readCaFile } from '../../kit/http/caBundle';
import type { ProjectionsView, Replicator, ReplicatorMetrics } from './replicator';
import { createReplicator } from './replicator';

/**
 * Builds a replicator from its configuration: the source is this
 * cluster's origins (the ring from `source.originUrl`, else from the placement projection in
 * the shared data directory), destinations are OCI registries reached with the credentials
 * configured for their host, and the lease is the one given (a Kafka group's, for a fleet on
 * one Kafka log) or `<dataDir>/replicator.lock`.
 */
export const createConfiguredReplicator = (deps: {
  config: ReplicationConfig;
  cluster: string;
  dataDir: string;
  log: EventLog;
  store: ProjectionStore;
  projections: ProjectionsView;
  logger: Logger;
  clock: Clock;
  metrics?: ReplicatorMetrics;
  /** Its identity to this cluster's origins (their internal API takes cluster identities). */
  identity?: ClientIdentity;
  /** Who runs among replicators on one log (default: `<dataDir>/replicator.lock`). */
  lease?: Lease;
}): Replicator & { readonly close: () => Promise<void> } => {
  const { config } = deps;
  const identity = deps.identity === undefined ? {} : { identity: deps.identity };
  const credentials = credentialsOf(config);
  const blobs: BlobAccess & { close: () => Promise<void> } = createBlobAccess({
    ring:
      config.source.originUrl === ''
        ? ringFromPlacement(deps.store)
        : ringFromOrigin(config.source.originUrl, identity),
    replicas: config.source.replicas,
    timeoutMs: config.timeoutMs,
    ...identity,
  });
  const ca = config.caFile === '' ? undefined : readCaFile(config.caFile, 'replication.caFile');
  const clients = new Map<string, RegistryClient>();
  const destination = (url: string): RegistryClient => {
    let client = clients.get(url);
    if (client === undefined) {
      // Configured as `host` or `host:port`; a default port may be written or not.
      const parsed = new URL(url);
      const port = parsed.port || (parsed.protocol === 'https:' ? '443' : '80');
      const credential =
        credentials.get(destinationHost(url).toLowerCase()) ??
        credentials.get(`${parsed.hostname}:${port}`.toLowerCase());
      client = createRegistryClient({
        baseUrl: url,
        ...(credential !== undefined && { credential }),
        timeoutMs: config.timeoutMs,
        writeHeaders: { 'Shoal-Replicated-From': deps.cluster },
        userAgent: `shoal-replicator (cluster ${deps.cluster})`,
        ...(ca !== undefined && { ca }),
      });
      clients.set(url, client);
    }
    return client;
  };
  const lease = !config.lock.enabled
    ? undefined
    : (deps.lease ??
      (existsSync(deps.dataDir)
        ? createFileLease(join(deps.dataDir, 'replicator.lock'), { leaseMs: config.lock.leaseMs })
        : undefined));
  const replicator = createReplicator({
    log: deps.log,
    store: deps.store,
    projections: deps.projections,
    config,
    cluster: deps.cluster,
    logger: deps.logger,
    clock: deps.clock,
    source: sourceFromBlobAccess(blobs),
    destination,
    ...(lease !== undefined && { lease }),
    ...(deps.metrics !== undefined && { metrics: deps.metrics }),
  });
  return {
    ...replicator,
    close: async () => {
      await replicator.stop();
      for (const client of clients.values()) client.close();
      await blobs.close();
    },
  };
};
