import { createHash, randomBytes } from 'node:crypto';
import type { Random } from '../sim/random';
import { seededRandom } from '../sim/random';
import type { Op, OpKind, Outcome } from './history';
import { tagWrites } from './history';
import { delay } from './processes';

// The soak's load: a few workers, bounded in rate, each doing seeded-random operations through
// the fleet's proxies and agents over the OCI Distribution API — pushes of images that share
// layers, multi-platform indexes with a signature attached as a referrer, tag moves and
// deletes, tag reads through a proxy with read-your-writes, pulls through agents. Every blob
// read back is checked against its digest. Writes to one tag are serialized (one writer per
// tag at a time, as a CI job is), reads run beside them.

const ociManifest = 'application/vnd.oci.image.manifest.v1+json';
const ociIndex = 'application/vnd.oci.image.index.v1+json';
const emptyConfig = 'application/vnd.oci.empty.v1+json';
const accept = [ociManifest, ociIndex].join(', ');

export const digestOf = (bytes: Buffer | string): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

type Descriptor = { mediaType: string; digest: string; size: number };
type Manifest = { body: Buffer; mediaType: string; digest: string };

/** What a worker draws (a signature follows its index). */
type DrawnKind = Exclude<OpKind, 'sign'>;

/** A definite refusal (the operation did not happen). */
class Refused extends Error {}

export type LoadOptions = {
  readonly seed: number;
  readonly workers: number;
  /** Operations per second, all workers together. */
  readonly rate: number;
  readonly repos: number;
  readonly tagsPerRepo: number;
  readonly proxies: () => readonly string[];
  readonly agents: () => readonly string[];
  /** Time for one attempt, and for an operation with its retries. */
  readonly attemptMs: number;
  readonly opMs: number;
};

export const createLoad = (options: LoadOptions) => {
  const history: Op[] = [];
  const manifests = new Map<string, Manifest>();
  /** Manifests each repository holds (acknowledged), to move tags to. */
  const repoManifests = new Map<string, string[]>();
  /** Per tag: the last acknowledged write (its position), for read-your-writes. */
  const lastAck = new Map<string, { position: number }>();
  const tagLocks = new Map<string, Promise<void>>();
  /** Tags whose last acknowledged write was not a delete. */
  const tagged = new Set<string>();
  let nextId = 1;
  let stopped = false;

  /** Layers images share: 4 KB … 128 KB. */
  const shared = Array.from({ length: 12 }, (_, i) => randomBytes(4096 * 2 ** (i % 6)));

  const repoName = (i: number) => `soak/app-${i}`;
  const tagName = (i: number) => `t${i}`;

  // --- one request, through the proxies in turn ---------------------------------------

  type Answer = { status: number; headers: Headers; body: Buffer };

  const request = async (
    base: string,
    method: string,
    path: string,
    init: { body?: Buffer; headers?: Record<string, string> } = {},
  ): Promise<Answer> => {
    const url = path.startsWith('http') ? path : `${base}${path}`;
    const response = await fetch(url, {
      method,
      headers: init.headers ?? {},
      ...(init.body !== undefined && { body: init.body }),
      signal: AbortSignal.timeout(options.attemptMs),
      redirect: 'follow',
    });
    const body = Buffer.from(await response.arrayBuffer());
    return { status: response.status, headers: response.headers, body };
  };

  /**
   * Runs `step` against the bases in turn (starting at a random one) until it succeeds or the
   * operation's time is up. A 4xx other than 408/429 is a definite refusal; anything else
   * (refused connection, timeout, 5xx) is retried on the next base.
   */
  const withRetries = async <T>(
    op: Op,
    bases: readonly string[],
    random: Random,
    step: (base: string) => Promise<T>,
  ): Promise<T> => {
    const deadline = op.start + options.opMs;
    let index = Math.floor(random() * bases.length);
    for (let attempt = 0; ; attempt++) {
      op.attempts++;
      const base = bases[index % bases.length] as string;
      try {
        return await step(base);
      } catch (error) {
        if (error instanceof Refused) throw error;
        op.error = `${base}: ${(error as Error).message}`.slice(0, 300);
        if (Date.now() + 250 > deadline) throw error;
        index++;
        await delay(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  };

  const check = (answer: Answer, ok: number[], what: string): Answer => {
    if (ok.includes(answer.status)) return answer;
    const text = answer.body.toString('utf8').slice(0, 200);
    const message = `${what} → ${answer.status} ${text}`;
    if (answer.status >= 400 && answer.status < 500 && ![408, 429].includes(answer.status)) {
      throw new Refused(message);
    }
    throw new Error(message);
  };

  const uploadBlob = async (base: string, repo: string, bytes: Buffer) => {
    const digest = digestOf(bytes);
    const head = await request(base, 'HEAD', `/v2/${repo}/blobs/${digest}`);
    if (head.status === 200) return;
    const started = check(
      await request(base, 'POST', `/v2/${repo}/blobs/uploads/`),
      [202],
      'upload start',
    );
    const location = new URL(started.headers.get('location') ?? '', `${base}/`);
    location.searchParams.set('digest', digest);
    check(
      await request(base, 'PUT', location.toString(), {
        body: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      }),
      [201],
      'upload',
    );
  };

  const putManifest = async (base: string, repo: string, reference: string, m: Manifest) => {
    const answer = check(
      await request(base, 'PUT', `/v2/${repo}/manifests/${reference}`, {
        body: m.body,
        headers: { 'content-type': m.mediaType },
      }),
      [201],
      `manifest ${reference}`,
    );
    const position = Number(answer.headers.get('shoal-position') ?? NaN);
    return Number.isInteger(position) ? position : undefined;
  };

  const manifestOf = (value: object, mediaType: string): Manifest => {
    const body = Buffer.from(JSON.stringify(value));
    const m = { body, mediaType, digest: digestOf(body) };
    manifests.set(m.digest, m);
    return m;
  };

  const blobDescriptor = (bytes: Buffer, mediaType: string): Descriptor => {
    return { mediaType, digest: digestOf(bytes), size: bytes.length };
  };

  /** A platform image: a config and two shared layers plus one of its own. */
  const newImage = (random: Random, platform: string) => {
    const [os, architecture] = platform.split('/');
    const config = Buffer.from(
      JSON.stringify({ architecture, os, rootfs: { type: 'layers' }, nonce: randomBytes(8) }),
    );
    const own = randomBytes(1024 + Math.floor(random() * 60_000));
    const layers = [
      shared[Math.floor(random() * shared.length)] as Buffer,
      shared[Math.floor(random() * shared.length)] as Buffer,
      own,
    ];
    const blobs = [config, ...new Set(layers)];
    const manifest = manifestOf(
      {
        schemaVersion: 2,
        mediaType: ociManifest,
        config: blobDescriptor(config, 'application/vnd.oci.image.config.v1+json'),
        layers: [...new Set(layers)].map((l) =>
          blobDescriptor(l, 'application/vnd.oci.image.layer.v1.tar'),
        ),
      },
      ociManifest,
    );
    return { blobs, manifest };
  };

  // --- operations ------------------------------------------------------------------------

  const record = (kind: OpKind, repo: string, via: string, tag?: string): Op => {
    const op: Op = {
      id: nextId++,
      kind,
      repo,
      ...(tag !== undefined && { tag }),
      via,
      start: Date.now(),
      end: 0,
      outcome: 'info',
      attempts: 0,
    };
    history.push(op);
    return op;
  };

  const finish = (op: Op, outcome: Outcome, error?: unknown) => {
    op.end = Date.now();
    op.outcome = outcome;
    if (outcome === 'ok') delete op.error;
    else if (error !== undefined) op.error = (error as Error).message.slice(0, 300);
  };

  /** A write's outcome when it threw: refused, or unknown (it may have happened). */
  const failedWrite = (op: Op, error: unknown) =>
    finish(op, error instanceof Refused ? 'fail' : 'info', error);

  const acked = (op: Op, position: number | undefined) => {
    if (op.tag !== undefined && position !== undefined) {
      lastAck.set(`${op.repo}:${op.tag}`, { position });
    }
    if (op.tag !== undefined) {
      if (op.value === null) tagged.delete(`${op.repo}:${op.tag}`);
      else tagged.add(`${op.repo}:${op.tag}`);
    }
    if (position !== undefined) op.position = position;
    finish(op, 'ok');
  };

  const rememberManifest = (repo: string, digest: string) => {
    const list = repoManifests.get(repo) ?? [];
    list.push(digest);
    repoManifests.set(repo, list);
  };

  const push = async (random: Random, repo: string, tag: string) => {
    const op = record('push', repo, 'proxy', tag);
    const image = newImage(random, 'linux/amd64');
    op.value = image.manifest.digest;
    op.written = [...image.blobs.map((b) => digestOf(b)), image.manifest.digest];
    try {
      const position = await withRetries(op, options.proxies(), random, async (base) => {
        for (const blob of image.blobs) await uploadBlob(base, repo, blob);
        return putManifest(base, repo, tag, image.manifest);
      });
      rememberManifest(repo, image.manifest.digest);
      acked(op, position);
    } catch (error) {
      failedWrite(op, error);
    }
  };

  const pushIndex = async (random: Random, repo: string, tag: string) => {
    const op = record('index', repo, 'proxy', tag);
    const platforms = [newImage(random, 'linux/amd64'), newImage(random, 'linux/arm64')];
    const index = manifestOf(
      {
        schemaVersion: 2,
        mediaType: ociIndex,
        manifests: platforms.map((p, i) => ({
          mediaType: ociManifest,
          digest: p.manifest.digest,
          size: p.manifest.body.length,
          platform: { os: 'linux', architecture: i === 0 ? 'amd64' : 'arm64' },
        })),
      },
      ociIndex,
    );
    op.value = index.digest;
    op.written = [
      ...platforms.flatMap((p) => [...p.blobs.map((b) => digestOf(b)), p.manifest.digest]),
      index.digest,
    ];
    try {
      const position = await withRetries(op, options.proxies(), random, async (base) => {
        for (const p of platforms) {
          for (const blob of p.blobs) await uploadBlob(base, repo, blob);
          await putManifest(base, repo, p.manifest.digest, p.manifest);
        }
        return putManifest(base, repo, tag, index);
      });
      rememberManifest(repo, index.digest);
      acked(op, position);
    } catch (error) {
      failedWrite(op, error);
      return;
    }
    // The signature: an artifact whose subject is the index (as cosign and notation attach).
    const sign = record('sign', repo, 'proxy');
    const payload = Buffer.from(JSON.stringify({ critical: { image: index.digest } }));
    const empty = Buffer.from('{}');
    const signature = manifestOf(
      {
        schemaVersion: 2,
        mediaType: ociManifest,
        artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
        config: blobDescriptor(empty, emptyConfig),
        layers: [blobDescriptor(payload, 'application/vnd.dev.cosign.simplesigning.v1+json')],
        subject: { mediaType: ociIndex, digest: index.digest, size: index.body.length },
      },
      ociManifest,
    );
    sign.value = signature.digest;
    sign.subject = index.digest;
    sign.written = [digestOf(empty), digestOf(payload), signature.digest];
    try {
      const position = await withRetries(sign, options.proxies(), random, async (base) => {
        await uploadBlob(base, repo, empty);
        await uploadBlob(base, repo, payload);
        return putManifest(base, repo, signature.digest, signature);
      });
      acked(sign, position);
    } catch (error) {
      failedWrite(sign, error);
    }
  };

  const move = async (random: Random, repo: string, tag: string) => {
    const known = repoManifests.get(repo) ?? [];
    if (known.length === 0) return push(random, repo, tag);
    const digest = known[Math.floor(random() * known.length)] as string;
    const m = manifests.get(digest) as Manifest;
    const op = record('move', repo, 'proxy', tag);
    op.value = digest;
    try {
      const position = await withRetries(op, options.proxies(), random, (base) =>
        putManifest(base, repo, tag, m),
      );
      acked(op, position);
    } catch (error) {
      failedWrite(op, error);
    }
  };

  const remove = async (random: Random, repo: string, tag: string) => {
    // Deleting a tag the history says is gone is a refusal, not a test: push instead.
    if (!tagged.has(`${repo}:${tag}`)) return push(random, repo, tag);
    const op = record('delete', repo, 'proxy', tag);
    op.value = null;
    try {
      const position = await withRetries(op, options.proxies(), random, async (base) => {
        const answer = await request(base, 'DELETE', `/v2/${repo}/manifests/${tag}`);
        // A retry after a delete that happened finds no tag: the delete is done either way.
        if (answer.status === 404 && op.attempts > 1) return undefined;
        check(answer, [202], 'delete');
        const position = Number(answer.headers.get('shoal-position') ?? NaN);
        return Number.isInteger(position) ? position : undefined;
      });
      acked(op, position);
    } catch (error) {
      failedWrite(op, error);
    }
  };

  /** Reads a manifest and every blob below it from `base`, checking each digest. */
  const readImage = async (op: Op, base: string, reference: string, headers = {}) => {
    const answer = await request(base, 'GET', `/v2/${op.repo}/manifests/${reference}`, {
      headers: { accept, ...headers },
    });
    if (answer.status === 404) return null;
    check(answer, [200], 'manifest');
    const digest = answer.headers.get('docker-content-digest') ?? digestOf(answer.body);
    const corrupt: string[] = [];
    if (digestOf(answer.body) !== digest) corrupt.push(digest);
    const body = JSON.parse(answer.body.toString('utf8')) as {
      manifests?: Descriptor[];
      config?: Descriptor;
      layers?: Descriptor[];
    };
    let image = body;
    if (body.manifests !== undefined && body.manifests.length > 0) {
      const child = body.manifests[0] as Descriptor;
      const got = await request(base, 'GET', `/v2/${op.repo}/manifests/${child.digest}`, {
        headers: { accept },
      });
      check(got, [200], 'platform manifest');
      if (digestOf(got.body) !== child.digest) corrupt.push(child.digest);
      image = JSON.parse(got.body.toString('utf8')) as typeof body;
    }
    for (const blob of [image.config, ...(image.layers ?? [])]) {
      if (blob === undefined) continue;
      const got = await request(base, 'GET', `/v2/${op.repo}/blobs/${blob.digest}`);
      check(got, [200], `blob ${blob.digest.slice(7, 19)}`);
      if (digestOf(got.body) !== blob.digest) corrupt.push(blob.digest);
    }
    if (corrupt.length > 0) op.corrupt = corrupt;
    return digest;
  };

  const read = async (random: Random, repo: string, tag: string) => {
    const op = record('read', repo, 'proxy', tag);
    const min = lastAck.get(`${repo}:${tag}`)?.position ?? 0;
    op.minPosition = min;
    try {
      op.value = await withRetries(op, options.proxies(), random, (base) =>
        readImage(op, base, tag, min > 0 ? { 'shoal-min-position': String(min) } : {}),
      );
      finish(op, 'ok');
    } catch (error) {
      finish(op, 'fail', error);
    }
  };

  const pull = async (random: Random, repo: string, tag: string) => {
    const agents = options.agents();
    const agent = agents[Math.floor(random() * agents.length)] as string;
    const op = record('pull', repo, agent, tag);
    try {
      // An agent is one host's registry: its own, no other to fail over to.
      op.value = await withRetries(op, [agent], random, (base) => readImage(op, base, tag));
      finish(op, 'ok');
    } catch (error) {
      finish(op, 'fail', error);
    }
  };

  /** Writes to one tag run one at a time. */
  const serialized = async (key: string, fn: () => Promise<void>) => {
    const before = tagLocks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    tagLocks.set(key, mine);
    await before;
    try {
      await fn();
    } finally {
      release();
      if (tagLocks.get(key) === mine) tagLocks.delete(key);
    }
  };

  const weights: [DrawnKind, number][] = [
    ['push', 25],
    ['index', 8],
    ['move', 12],
    ['delete', 5],
    ['read', 30],
    ['pull', 20],
  ];
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  const pick = (random: Random): DrawnKind => {
    let roll = random() * total;
    for (const [kind, weight] of weights) {
      roll -= weight;
      if (roll < 0) return kind;
    }
    return 'read';
  };

  const operations: Record<
    DrawnKind,
    (random: Random, repo: string, tag: string) => Promise<void>
  > = { push, index: pushIndex, move, delete: remove, read, pull };

  const worker = async (index: number) => {
    const random = seededRandom(options.seed, 100 + index);
    const every = (1000 * options.workers) / options.rate;
    while (!stopped) {
      const began = Date.now();
      const repo = repoName(Math.floor(random() * options.repos));
      const tag = tagName(Math.floor(random() * options.tagsPerRepo));
      const kind = pick(random);
      const run = operations[kind];
      // Writes to one tag run one at a time; reads and pulls beside them.
      if (tagWrites.has(kind)) await serialized(`${repo}:${tag}`, () => run(random, repo, tag));
      else await run(random, repo, tag);
      const rest = every * (0.5 + random()) - (Date.now() - began);
      if (rest > 0 && !stopped) await delay(rest);
    }
  };

  let running: Promise<void[]> | undefined;
  return {
    history,
    /** Which written digests are manifests (the rest are blobs). */
    manifestDigests: (): ReadonlySet<string> => new Set(manifests.keys()),
    start: () => {
      running = Promise.all(Array.from({ length: options.workers }, (_, i) => worker(i)));
    },
    /** Stops starting operations and waits for those under way. */
    stop: async () => {
      stopped = true;
      await running;
    },
  };
};

export type Load = ReturnType<typeof createLoad>;
