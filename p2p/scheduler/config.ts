import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

/**
 * Settings of one blob's scheduler (`p2p.scheduler` in the agent's and the origin seeder's
 * YAML). Defaults follow Kraken's tested values and the swarm benchmark (`npm run bench:p2p`); every
 * one is documented here and in the README.
 */
export const SchedulerConfigSchema = Type.Object(
  {
    maxConnections: Type.Integer({
      default: 10,
      minimum: 1,
      maximum: 1000,
      description: 'most open (and pending) connections per blob',
    }),
    reservedOutbound: Type.Integer({
      default: 2,
      minimum: 0,
      description:
        'slots incoming peers may not take while this peer still downloads, so a new peer ' +
        'can always dial seeders and origins (Kraken issue #162)',
    }),
    reservedInbound: Type.Integer({
      default: 2,
      minimum: 0,
      description: 'slots our own dials may not take, so later joiners can connect to us',
    }),
    pipeline: Type.Integer({
      default: 3,
      minimum: 1,
      maximum: 64,
      description: 'outstanding piece requests per agent peer',
    }),
    originPipeline: Type.Integer({
      default: 5,
      minimum: 1,
      maximum: 64,
      description: 'outstanding piece requests per origin peer',
    }),
    requestTimeoutMs: Type.Integer({
      default: 4000,
      minimum: 10,
      description:
        'a request overdue by this (plus the per-MiB part) from a peer that has sent no ' +
        'block for as long is cancelled and asked elsewhere',
    }),
    requestTimeoutPerMiBMs: Type.Integer({
      default: 4000,
      minimum: 0,
      description: 'added to a request timeout per MiB of piece length',
    }),
    busyBackoffMs: Type.Integer({
      default: 1000,
      minimum: 0,
      description:
        'after a peer answers BUSY or UNAVAILABLE for a piece, ask it again after this; when ' +
        'no agent sent a block for this long and none has a request outstanding, origins ' +
        'may be asked for pieces agents hold',
    }),
    endgameThreshold: Type.Integer({
      default: 4,
      minimum: 0,
      description: 'missing pieces at or below which requests may be duplicated (endgame)',
    }),
    endgameDuplicates: Type.Integer({
      default: 2,
      minimum: 1,
      maximum: 8,
      description: 'most peers one piece is requested from at once in endgame',
    }),
    maxUploads: Type.Integer({
      default: 16,
      minimum: 1,
      maximum: 1024,
      description:
        'piece uploads in flight per blob; further requests queue (origins: least-sent ' +
        'pieces first). Few uploads at full rate spread new pieces fastest, ' +
        'but each receiver caps its ingress: with 4, an uploader whose few receivers are ' +
        'busy elsewhere idles (bench N=32: η p99 0.62 with 4, 0.89 with 16)',
    }),
    maxQueuedUploads: Type.Integer({
      default: 32,
      minimum: 0,
      description:
        'requests waiting for an upload slot per blob; beyond this a request is answered ' +
        'BUSY at once (the peer asks elsewhere) rather than waiting into its timeout',
    }),
    busyPauseMs: Type.Integer({
      default: 250,
      minimum: 0,
      description: 'after a BUSY answer, send that peer no new request for this long',
    }),
    originBusyAvailability: Type.Integer({
      default: 2,
      minimum: 0,
      description:
        'origins only: answer BUSY to a request for a piece already sent once that this many ' +
        'connected agents hold (0: never); a peer asking twice for the same piece is served',
    }),
    originBusyRepeats: Type.Integer({
      default: 1,
      minimum: 1,
      maximum: 64,
      description:
        'origins only: how often one agent is answered BUSY for one piece (see ' +
        'originBusyAvailability) before the origin serves it anyway',
    }),
    blacklistMs: Type.Integer({
      default: 60_000,
      minimum: 0,
      description: 'how long a peer that sent a bad piece is refused and not dialed',
    }),
    dialBackoffMs: Type.Integer({
      default: 5000,
      minimum: 0,
      description: 'how long an address that could not be dialed is not tried again',
    }),
    idleConnectionMs: Type.Integer({
      default: 20_000,
      minimum: 0,
      description:
        'close a connection with no piece traffic either way for this long (frees the slot ' +
        'for a useful peer; keep it above the request timeout); 0: never',
    }),
    seedTimeMs: Type.Integer({
      default: 300_000,
      minimum: 0,
      description: 'keep seeding this long after the download completes; 0: until closed',
    }),
    seedIdleMs: Type.Integer({
      default: 0,
      minimum: 0,
      description: 'stop seeding a complete blob after this long without connections; 0: never',
    }),
    starvedAnnounceMs: Type.Integer({
      default: 1000,
      minimum: 0,
      description:
        'ask the tracker for more peers early (at most this often) while fewer than half ' +
        'the connection slots are in use and every peer it named has been tried: a late ' +
        'joiner refused by full peers need not wait out the announce interval; 0: never',
    }),
    tickMs: Type.Integer({
      default: 250,
      minimum: 5,
      description: 'period of the scheduler tick: timeouts, dials, idle connections',
    }),
  },
  { default: {} },
);

export type SchedulerConfig = Static<typeof SchedulerConfigSchema>;

/** The defaults, for callers that do not go through a role's config loader (tests, bench). */
export const defaultSchedulerConfig: SchedulerConfig = {
  maxConnections: 10,
  reservedOutbound: 2,
  reservedInbound: 2,
  pipeline: 3,
  originPipeline: 5,
  requestTimeoutMs: 4000,
  requestTimeoutPerMiBMs: 4000,
  busyBackoffMs: 1000,
  endgameThreshold: 4,
  endgameDuplicates: 2,
  maxUploads: 16,
  maxQueuedUploads: 32,
  busyPauseMs: 250,
  originBusyAvailability: 2,
  originBusyRepeats: 1,
  blacklistMs: 60_000,
  dialBackoffMs: 5000,
  idleConnectionMs: 20_000,
  seedTimeMs: 300_000,
  seedIdleMs: 0,
  starvedAnnounceMs: 1000,
  tickMs: 250,
};

export const schedulerConfigOf = (config: Partial<SchedulerConfig> = {}): SchedulerConfig => ({
  ...defaultSchedulerConfig,
  ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
});
