import { createCipheriv, createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sha256 } from '../../fixtures/blobs';
import type { Started } from './processes';
import { freePort, startShoal } from './processes';

/*
 * A Shoal cluster on loopback for the P2P benchmarks: an origin (its seeder limited to a
 * rate), a tracker and agents as separate processes; blobs stored on the origin; blobs
 * fetched from agents and checked against their digest.
 */

export type ClusterOptions = {
  readonly dir: string;
  /** The origin seeder's egress in bytes/s; 0: none. */
  readonly originRate: number;
  /** Environment of the tracker (e.g. its announce interval). */
  readonly trackerEnv?: NodeJS.ProcessEnv;
};

export type Agent = Started & { readonly index: number };

export type Cluster = {
  readonly origin: Started;
  readonly tracker: Started;
  /** Starts agents, each limited to `rate` bytes/s in and out (0: none). */
  startAgents(count: number, rate: number): Promise<Agent[]>;
  /** Stores a blob (bytes, or generated content) on the origin; returns its digest. */
  put(blob: Buffer | GeneratedBlob): Promise<string>;
};

/** e.g. SHOAL_BENCH_ORIGIN_SCHEDULER='{ maxUploads: 4 }' to try settings. */
const schedulerLine = (variable: string) =>
  process.env[variable] ? [`  scheduler: ${process.env[variable]}`] : [];

export const startCluster = async (options: ClusterOptions): Promise<Cluster> => {
  const { dir } = options;
  const originPort = await freePort();
  const originP2p = await freePort();
  const trackerPort = await freePort();
  const originUrl = `http://127.0.0.1:${originPort}`;
  const trackerUrl = `http://127.0.0.1:${trackerPort}`;
  writeFileSync(
    join(dir, 'origin.yaml'),
    [
      'id: o1',
      `dataDir: ${join(dir, 'data')}`,
      `listen: { host: 127.0.0.1, port: ${originPort} }`,
      'replicas: 1',
      'logLevel: warn',
      'p2p:',
      `  port: ${originP2p}`,
      `  bandwidth: { egressBytesPerSecond: ${options.originRate} }`,
      ...schedulerLine('SHOAL_BENCH_ORIGIN_SCHEDULER'),
    ].join('\n'),
  );
  const origin = await startShoal(['origin', '--config', join(dir, 'origin.yaml')], originUrl);
  const tracker = await startShoal(
    ['tracker', '--host', '127.0.0.1', '--port', String(trackerPort), '--origin', originUrl],
    trackerUrl,
    options.trackerEnv,
  );
  let agents = 0;
  const startAgents = (count: number, rate: number) =>
    Promise.all(
      Array.from({ length: count }, async () => {
        const index = agents;
        agents += 1;
        const config = join(dir, `agent-${index}.yaml`);
        mkdirSync(join(dir, `agent-${index}`), { recursive: true });
        writeFileSync(
          config,
          [
            `id: a${index}`,
            `dataDir: ${join(dir, `agent-${index}`)}`,
            'listen: { host: 127.0.0.1, port: 0 }',
            'logLevel: warn',
            'p2p:',
            `  bandwidth: { ingressBytesPerSecond: ${rate}, egressBytesPerSecond: ${rate} }`,
            ...schedulerLine('SHOAL_BENCH_AGENT_SCHEDULER'),
            `trackers: { urls: [${trackerUrl}] }`,
            'cache: { fsync: false }',
          ].join('\n'),
        );
        const started = await startShoal(
          ['agent', '--config', config],
          /agent \S+ listening on (http:\/\/\S+)/,
        );
        return { ...started, index };
      }),
    );
  return { origin, tracker, startAgents, put: (blob) => putBlob(originUrl, blob) };
};

/** PUTs a blob to the origin's internal API (large ones streamed as they are generated). */
const putBlob = async (originUrl: string, blob: Buffer | GeneratedBlob): Promise<string> => {
  const digest = Buffer.isBuffer(blob) ? sha256(blob) : blob.digest;
  const url = new URL(`${originUrl}/internal/blobs/${digest}?repo=bench/p2p`);
  await new Promise<void>((done, fail) => {
    const size = Buffer.isBuffer(blob) ? blob.length : blob.size;
    const req = request(
      url,
      {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', 'content-length': size },
      },
      (response) => {
        let text = '';
        response.on('data', (d: Buffer) => (text += d.toString()));
        response.on('end', () =>
          (response.statusCode ?? 500) < 300
            ? done()
            : fail(new Error(`cannot store a blob: ${response.statusCode} ${text}`)),
        );
      },
    );
    req.once('error', fail);
    if (Buffer.isBuffer(blob)) req.end(blob);
    else pipeline(blob.open(), req).catch(fail);
  });
  return digest;
};

/** Pseudo-random content that can be generated again: large blobs never sit in memory. */
export type GeneratedBlob = {
  readonly digest: string;
  readonly size: number;
  /** A fresh stream of the content. */
  readonly open: () => Readable;
};

/** `size` bytes of an AES-128-CTR key stream (fast, reproducible from `seed`). */
export const generatedBlob = (seed: string, size: number): GeneratedBlob => {
  const key = createHash('sha256').update(seed).digest();
  const chunks = function* () {
    const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
    const zeros = Buffer.alloc(1024 * 1024);
    for (let at = 0; at < size; at += zeros.length) {
      yield cipher.update(zeros.subarray(0, Math.min(zeros.length, size - at)));
    }
  };
  const hash = createHash('sha256');
  for (const chunk of chunks()) hash.update(chunk);
  return {
    digest: `sha256:${hash.digest('hex')}`,
    size,
    open: () => Readable.from(chunks(), { objectMode: false }),
  };
};

/**
 * Fetches a blob from an agent and hashes it as it streams. The agent answers once the blob
 * is complete and verified: `ms` (to the response) is its completion time, `bodyMs` adds the
 * body. `onReady` runs when the response arrives, before the body is read.
 */
export const fetchBlob = async (url: string, onReady?: () => void) => {
  const started = performance.now();
  let phase = 'headers';
  try {
    const response = await fetch(url);
    if (response.status !== 200 || response.body === null) {
      throw new Error(`${url}: ${response.status} ${await response.text()}`);
    }
    const ready = performance.now() - started;
    onReady?.();
    phase = 'body';
    const hash = createHash('sha256');
    for await (const chunk of response.body) hash.update(chunk as Uint8Array);
    const digest = `sha256:${hash.digest('hex')}`;
    return { ms: ready, bodyMs: performance.now() - started, digest };
  } catch (error) {
    const elapsed = ((performance.now() - started) / 1000).toFixed(1);
    throw new Error(`GET ${url} failed in the ${phase} after ${elapsed} s`, { cause: error });
  }
};

export const json = async <T>(url: string): Promise<T> => (await (await fetch(url)).json()) as T;

export type SwarmStats = {
  startedAt: number;
  firstByteAt?: number;
  completedAt?: number;
  bytesReceived: number;
  bytesDownloaded: number;
  originBytes: number;
  duplicateBytes: number;
  bytesUploaded: number;
};

export type P2pStatus = {
  totals: { bytesUploaded: number };
  swarms: Array<{ digest: string; stats: SwarmStats }>;
};
