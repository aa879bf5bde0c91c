import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { BandwidthConfigSchema } from '../../../p2p/bandwidth';
import type { SchedulerConfig } from '../../../p2p/scheduler';

/**
 * The origin's P2P seeder (`p2p` in the origin's YAML): a peer port on which the origin joins
 * the swarms of blobs it holds as a complete peer, serving pieces from its blob files.
 */
export const SeederConfigSchema = Type.Object(
  {
    port: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 65535,
      description: 'peer port of the seeder; 0: no seeder (the origin takes no part in swarms)',
    }),
    host: Type.String({
      default: '',
      description: 'address the peer port listens on; empty: the HTTP listen host',
    }),
    advertiseHost: Type.String({
      default: '',
      description:
        'host agents dial; empty: the listen host, or the host of advertiseUrl when the ' +
        'listen host is a wildcard',
    }),
    bandwidth: BandwidthConfigSchema,
    scheduler: Type.Object(
      {
        maxConnections: Type.Integer({
          default: 64,
          minimum: 1,
          description: 'most agents connected per blob (an origin feeds many agents at once)',
        }),
        maxUploads: Type.Integer({
          default: 8,
          minimum: 1,
          description: 'piece uploads in flight per blob; the rest queue, least-sent first',
        }),
        maxQueuedUploads: Type.Integer({
          default: 64,
          minimum: 0,
          description: 'requests waiting for an upload slot per blob; beyond this: BUSY',
        }),
        originBusyAvailability: Type.Integer({
          default: 2,
          minimum: 0,
          description:
            'answer BUSY (up to originBusyRepeats times per agent and piece) to a request for a piece already sent ' +
            'that this many connected agents hold; 0: never',
        }),
        originBusyRepeats: Type.Integer({
          default: 6,
          minimum: 1,
          description:
            'how often one agent is answered BUSY for one piece before it is served anyway ' +
            '(bench N=32: origin egress 2.7 × size with 1, 1.96–2.2 × with 4, 1.80–1.92 × ' +
            'with 6; 1.90 × with 8 but η p99 0.75)',
        }),
        seedIdleMs: Type.Integer({
          default: 60_000,
          minimum: 1000,
          description: 'leave a swarm after this long without connections',
        }),
        idleConnectionMs: Type.Integer({
          default: 20_000,
          minimum: 0,
          description: 'close a connection with no piece traffic for this long',
        }),
      },
      { default: {} },
    ),
  },
  { default: {} },
);

export type SeederConfig = Static<typeof SeederConfigSchema>;

/** The scheduler settings of an origin's swarms: a seed that never dials. */
export const originSchedulerConfig = (config: SeederConfig): Partial<SchedulerConfig> => ({
  ...config.scheduler,
  seedTimeMs: 0,
  reservedOutbound: 0,
  reservedInbound: 0,
});
