import type { Clock, EventLog } from '../../domain';
import type { WriterContext } from '../shared/events';
import type { Logger } from '../shared/logger';
import type { BackendRouter } from './backendRouter';
import type { OriginClient } from './client/originClient';
import type { OriginConfig } from './config';
import type { KeyedLocks } from './keyedLocks';
import type { OriginMetrics } from './metrics';
import type { RingView } from './ringView';
import type { ContentStore } from './store/contentStore';
import type { OriginDb } from './store/originDb';

/** What the origin's parts share: its identity, config, ports, local stores and peers. */
export type OriginContext = {
  readonly selfId: string;
  readonly config: OriginConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly log: EventLog;
  readonly writer: WriterContext;
  /** The storage backends, chosen per repository by namespace. */
  readonly backends: BackendRouter;
  readonly db: OriginDb;
  readonly content: ContentStore;
  /**
   * Per digest: landing a blob here and recording it (commit, put, fill) excludes dropping or
   * evicting this origin's copy.
   */
  readonly blobLocks: KeyedLocks;
  readonly uploadsDir: string;
  readonly ring: RingView;
  /** A client of another origin, by its advertised address (cached). */
  readonly peer: (address: string) => OriginClient;
  readonly metrics: OriginMetrics;
  /** Jobs were enqueued: let the worker look now. */
  readonly wakeJobs: () => void;
  /** Waits (bounded) until the placement projection has applied the log's current head. */
  readonly catchUpRing: () => Promise<void>;
};
