import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { TokenBucket } from './tokenBucket';

/**
 * Per-host bandwidth limits, for a role's config (`p2p.bandwidth` in the agent's YAML).
 * One pair of buckets serves every connection of every blob on the host.
 */
export const BandwidthConfigSchema = Type.Object(
  {
    ingressBytesPerSecond: Type.Integer({
      default: 0,
      minimum: 0,
      description: 'P2P download limit of this host in bytes/s, all blobs and peers; 0: none',
    }),
    egressBytesPerSecond: Type.Integer({
      default: 0,
      minimum: 0,
      description: 'P2P upload limit of this host in bytes/s, all blobs and peers; 0: none',
    }),
    burstBytes: Type.Integer({
      default: 0,
      minimum: 0,
      description:
        'largest burst after idling, per direction; 0: a tenth of a second of the rate, ' +
        'at least 512 KiB',
    }),
  },
  { default: {} },
);

export type BandwidthConfig = Static<typeof BandwidthConfigSchema>;

export type Bandwidth = { readonly ingress: TokenBucket; readonly egress: TokenBucket };

export const createBandwidth = (
  config: Partial<BandwidthConfig>,
  now?: () => number,
): Bandwidth => {
  const burst =
    config.burstBytes === undefined || config.burstBytes === 0 ? undefined : config.burstBytes;
  return {
    ingress: new TokenBucket({ rate: config.ingressBytesPerSecond ?? 0, burst, now }),
    egress: new TokenBucket({ rate: config.egressBytesPerSecond ?? 0, burst, now }),
  };
};
