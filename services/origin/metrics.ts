import { statfs } from 'node:fs/promises';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Clock } from '../../domain';
import type { OriginDb } from './store/originDb';
import { directoryBytes } from './store/diskUse';

/** Who received bytes an origin sent. */
export type EgressDestination = 'agent' | 'client' | 'origin' | 'backend';

const jobKinds = ['write-back', 'place', 'drop', 'erase'] as const;

/** The origin's own metrics, beside the HTTP ones every service has. */
export const createOriginMetrics = (
  registry: Registry,
  deps: {
    db: () => OriginDb | undefined;
    clock: Clock;
    /** The origin's directory (blobs, uploads, queue): its disk use is measured. */
    directory: string;
  },
) => {
  const { db, clock } = deps;
  const bytesIn = new Counter({
    name: 'shoal_origin_bytes_received_total',
    help: 'Blob bytes received, by how they came (upload, put, replica, fill)',
    labelNames: ['source'] as const,
    registers: [registry],
  });
  const bytesOut = new Counter({
    name: 'shoal_origin_bytes_sent_total',
    help: 'Blob bytes sent, by where they went (read, replica, write-back)',
    labelNames: ['target'] as const,
    registers: [registry],
  });
  // Egress by who received it. The seeder's uploads to agents are its own count, read at
  // scrape time; the rest is counted here as it is sent.
  const sent: Record<Exclude<EgressDestination, 'agent'>, number> = {
    client: 0,
    origin: 0,
    backend: 0,
  };
  let toAgents = (): number => 0;
  new Counter({
    name: 'shoal_origin_egress_bytes_total',
    help:
      'Blob bytes the origin sent, by destination: agent (P2P pieces), client (reads for ' +
      'the proxy or the replicator), origin (copies and fills for peer origins), backend',
    labelNames: ['destination'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ destination: 'agent' }, toAgents());
      for (const [destination, n] of Object.entries(sent)) this.inc({ destination }, n);
    },
  });
  const jobs = new Counter({
    name: 'shoal_origin_jobs_total',
    help: 'Durable job runs (write-back, place, drop, erase) by outcome (done, dropped, failed)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [registry],
  });
  const fills = new Counter({
    name: 'shoal_origin_fills_total',
    help: 'Blobs an owner fetched because it lacked them, by source (peer, backend, none)',
    labelNames: ['source'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'shoal_origin_jobs_pending',
    help: 'Durable jobs queued, by kind (write-back, place, drop, erase)',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      const counts = db()?.jobCounts() ?? {};
      this.reset();
      for (const kind of jobKinds) this.set({ kind }, counts[kind] ?? 0);
    },
  });
  new Gauge({
    name: 'shoal_origin_jobs_oldest_age_seconds',
    help: 'Age of the oldest queued job, by kind (0: none queued)',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      const oldest = db()?.oldestJobs() ?? {};
      const now = clock.now();
      this.reset();
      for (const kind of jobKinds) {
        const at = oldest[kind];
        this.set({ kind }, at === undefined ? 0 : Math.max(0, (now - at) / 1000));
      }
    },
  });
  new Gauge({
    name: 'shoal_origin_upload_sessions',
    help: 'Open upload sessions',
    registers: [registry],
    collect() {
      this.set(db()?.openUploadCount() ?? 0);
    },
  });
  new Gauge({
    name: 'shoal_origin_disk_bytes',
    help:
      'Bytes on disk: used (the origin directory: blobs, uploads, queue), and the free ' +
      'and total bytes of the filesystem holding it',
    labelNames: ['kind'] as const,
    registers: [registry],
    async collect() {
      const [used, fs] = await Promise.all([
        directoryBytes(deps.directory),
        statfs(deps.directory).catch(() => undefined),
      ]);
      this.reset();
      this.set({ kind: 'used' }, used);
      if (fs !== undefined) {
        this.set({ kind: 'free' }, fs.bavail * fs.bsize);
        this.set({ kind: 'total' }, fs.blocks * fs.bsize);
      }
    },
  });
  // Every series exists from the start (at 0), so rates and dashboards see it before the first.
  for (const kind of jobKinds) {
    for (const outcome of ['done', 'dropped', 'failed']) jobs.inc({ kind, outcome }, 0);
  }
  for (const source of ['peer', 'backend', 'none', 'corrupt']) fills.inc({ source }, 0);
  const evictions = new Counter({
    name: 'shoal_origin_evictions_total',
    help: 'Blobs dropped from the local cache above the high watermark (persisted ones only)',
    registers: [registry],
  });
  const evictedBytes = new Counter({
    name: 'shoal_origin_evicted_bytes_total',
    help: 'Bytes dropped from the local cache above the high watermark',
    registers: [registry],
  });
  const collected = new Counter({
    name: 'shoal_origin_collected_total',
    help: 'Copies of GC-collected blobs dropped here, and backend objects erased',
    labelNames: ['what'] as const,
    registers: [registry],
  });
  return {
    bytesIn,
    bytesOut,
    jobs,
    fills,
    evictions,
    evictedBytes,
    collected,
    /** Counts bytes sent (to all but agents, whose bytes the seeder counts). */
    egress: (destination: Exclude<EgressDestination, 'agent'>, n: number) => {
      sent[destination] += n;
    },
    /** Where the bytes sent to agents are read from (the seeder, once it runs). */
    agentEgressFrom: (read: () => number) => {
      toAgents = read;
    },
  };
};

export type OriginMetrics = ReturnType<typeof createOriginMetrics>;
