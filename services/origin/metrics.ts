import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { OriginDb } from './store/originDb';

/** The origin's own metrics, beside the HTTP ones every service has. */
export const createOriginMetrics = (registry: Registry, db: () => OriginDb | undefined) => {
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
  const jobs = new Counter({
    name: 'shoal_origin_jobs_total',
    help: 'Write-back and placement job runs by outcome (done, dropped, failed)',
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
    help: 'Write-back and placement jobs queued, by kind',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      const counts = db()?.jobCounts() ?? {};
      this.reset();
      for (const kind of ['write-back', 'place']) this.set({ kind }, counts[kind] ?? 0);
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
  return { bytesIn, bytesOut, jobs, fills };
};

export type OriginMetrics = ReturnType<typeof createOriginMetrics>;
