import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { StoredPiece } from '../../p2p/scheduler';
import type { SwarmHost, SwarmTotals } from '../../p2p/swarm';
import type { BlobCache } from './blobCache';

const totalsHelp: Record<keyof SwarmTotals, string> = {
  bytesReceived: 'Piece payload bytes received from peers, useful or not',
  bytesDownloaded: 'Bytes of pieces received that verified and were stored',
  originBytes: 'Of the stored bytes, those that came from origins',
  duplicateBytes: 'Bytes dropped because another peer was already sending the piece',
  bytesUploaded: 'Piece bytes uploaded to peers',
  badPieces: 'Pieces that failed their hash (the sender is blacklisted)',
  timeouts: 'Piece requests that timed out and were asked elsewhere',
  busySent: 'Requests answered BUSY',
  blacklisted: 'Peers blacklisted',
};

const snake = (name: string) => name.replace(/([A-Z])/g, '_$1').toLowerCase();

/**
 * The agent's metrics, beside the HTTP ones: its swarm host's totals
 * (`shoal_agent_p2p_*_total`), the stored bytes by source (`peer` agents or `origin`), the
 * latency of each stored piece from request to verified on disk, its swarms, and its cache
 * (use, quota, evictions). Totals are read from the host at scrape time; piece latencies
 * arrive through {@link AgentMetrics.pieceStored}, which the swarm host calls.
 */
export const createAgentMetrics = (registry: Registry) => {
  const ref: { host?: SwarmHost; cache?: BlobCache } = {};
  const totals = () => ref.host?.totals();
  for (const key of Object.keys(totalsHelp) as (keyof SwarmTotals)[]) {
    new Counter({
      name: `shoal_agent_p2p_${snake(key).replace(/^bytes_(\w+)$/, '$1_bytes')}_total`,
      help: totalsHelp[key],
      registers: [registry],
      collect() {
        this.reset();
        this.inc(totals()?.[key] ?? 0);
      },
    });
  }
  new Counter({
    name: 'shoal_agent_bytes_in_total',
    help: 'Blob bytes stored from the swarm, by source: peer (other agents) or origin',
    labelNames: ['source'] as const,
    registers: [registry],
    collect() {
      const t = totals();
      this.reset();
      this.inc({ source: 'origin' }, t?.originBytes ?? 0);
      this.inc({ source: 'peer' }, Math.max(0, (t?.bytesDownloaded ?? 0) - (t?.originBytes ?? 0)));
    },
  });
  const pieces = new Histogram({
    name: 'shoal_agent_piece_duration_seconds',
    help: 'Time from requesting a piece to having it verified and stored, by source',
    labelNames: ['source'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  new Gauge({
    name: 'shoal_agent_swarms',
    help: 'Swarms this agent is in (downloading or seeding)',
    registers: [registry],
    collect() {
      this.set(ref.host?.swarms().length ?? 0);
    },
  });
  new Gauge({
    name: 'shoal_agent_cache_bytes',
    help: 'Bytes in the blob cache (complete and downloading)',
    registers: [registry],
    collect() {
      this.set(ref.cache?.stats().used ?? 0);
    },
  });
  new Gauge({
    name: 'shoal_agent_cache_quota_bytes',
    help: 'The blob cache quota (cache.quotaBytes)',
    registers: [registry],
    collect() {
      this.set(ref.cache?.stats().quota ?? 0);
    },
  });
  new Counter({
    name: 'shoal_agent_cache_evictions_total',
    help:
      'Blobs evicted from the cache, by reason: quota (to make room), disk (above the high ' +
      'watermark), idle (no container pulled it for cache.idleDropMs)',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const evicted = ref.cache?.stats().evicted ?? { quota: 0, disk: 0, idle: 0 };
      for (const [reason, n] of Object.entries(evicted)) this.inc({ reason }, n);
    },
  });
  return {
    /** Where totals, swarms and cache use are read from at scrape time. */
    observe: (host: SwarmHost, cache: BlobCache) => {
      ref.host = host;
      ref.cache = cache;
    },
    /** A piece was stored (the swarm host's `onPieceStored`). */
    pieceStored: (piece: StoredPiece) =>
      pieces.observe({ source: piece.fromOrigin ? 'origin' : 'peer' }, piece.latencyMs / 1000),
  };
};

export type AgentMetrics = ReturnType<typeof createAgentMetrics>;
