import { join } from 'node:path';
import { openKafkaEventLog } from '../../adapters/eventlog';
import { owners as ownersOf } from '../../domain/placement';
import { silentLogger } from '../../services/shared/logger';
import { serviceHeaders } from '../fixtures/security';
import type { Fleet, Member } from './fleet';
import type { Fault, FaultKind, Op } from './history';
import { faultKinds, tagWrites } from './history';
import { digestOf } from './load';
import { runToolAsync } from '../fixtures/processes';
import { delay, repoRoot, shoalCli } from './processes';

/** oras, as `test/services/tools.sh install` builds it into .tools/bin. */
const oras = join(repoRoot, '.tools/bin/oras');

// The soak's checker: not the product. It reads the history (every operation with its start,
// end and result) and the fleet's final state, and says what held:
//   - every tag's final digest, in both clusters, is one the history allows: the last
//     acknowledged write's, or an unacknowledged write's after it (lost: anything else);
//   - every acknowledged push and index is pullable from A by digest, every byte right (lost:
//     missing; corrupt: wrong bytes), and from B when a tag points at it at the end (B holds
//     tags' states, see below), with its signatures listed among its referrers in B (over
//     the API, and for a few by `oras discover`);
//   - every read through a proxy with read-your-writes returned a digest the tag held at
//     some moment the read could see (stale: an older one); every read returned right bytes;
//   - replication converged (B equal to A) within `convergeMs` after the faults stopped;
//   - `shoal replay --verify` is equal on every build-index;
//   - every live blob has R copies on A's origins once healed (within `healMs`).

const percentile = (sorted: readonly number[], q: number): number =>
  sorted.length === 0
    ? 0
    : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);

export type Report = {
  seed: number;
  minutes: number;
  operations: { total: number; byKind: Record<string, Record<string, number>> };
  faults: Record<FaultKind, { injected: number; skipped: number; why?: string }>;
  lost: number;
  corrupt: number;
  stale: number;
  missingReferrers: number;
  underReplicated: number;
  /** Owner copies evicted under disk pressure after write-back (not missing). */
  evictedCopies: number;
  replay: Record<string, boolean>;
  convergedSeconds: number | null;
  availability: {
    whileFaulted: number;
    overall: number;
    opsWhileFaulted: number;
    /** Operations that needed more than one attempt (another proxy, a retry after a 5xx). */
    retried: number;
    /** Latency of the successful operations while faults ran, in ms. */
    p50MsWhileFaulted: number;
    p99MsWhileFaulted: number;
  };
  problems: string[];
  passed: boolean;
};

type TagKey = string;

/** Digests a tag may end at: the last acknowledged write's, and unknown ones after it. */
const finalCandidates = (history: readonly Op[]): Map<TagKey, Set<string | null>> => {
  const out = new Map<TagKey, Set<string | null>>();
  for (const op of history) {
    if (!tagWrites.has(op.kind) || op.tag === undefined) continue;
    const key = `${op.repo}:${op.tag}`;
    const set = out.get(key) ?? new Set<string | null>([null]);
    if (op.outcome === 'ok') {
      set.clear();
      set.add(op.value ?? null);
    } else if (op.outcome === 'info') {
      set.add(op.value ?? null);
    }
    out.set(key, set);
  }
  return out;
};

/** What a read of `key` over [start, end] may return (null: no tag). */
const readCandidates = (tagWrites: readonly Op[], read: Op): Set<string | null> => {
  const allowed = new Set<string | null>([null]);
  for (const w of tagWrites) {
    if (w.outcome === 'fail') continue;
    if (w.end < read.start) {
      // Finished before the read began: an acknowledged one replaces what came before.
      if (w.outcome === 'ok') allowed.clear();
      allowed.add(w.value ?? null);
    } else if (w.start < read.end) {
      allowed.add(w.value ?? null); // concurrent with the read
    }
  }
  return allowed;
};

/** Who holds each blob on record (BlobPlaced, less BlobReleased) and which were written back. */
const readPlacement = async (brokers: readonly string[], topic: string) => {
  const log = await openKafkaEventLog({
    brokers: [...brokers],
    topic,
    replicationFactor: 3,
    createTopic: false,
    logger: silentLogger(),
  });
  const holders = new Map<string, Set<string>>();
  const persisted = new Set<string>();
  try {
    for await (const event of log.read(1)) {
      if (event.type === 'BlobPlaced') {
        const set = holders.get(event.data.digest) ?? new Set<string>();
        set.add(event.data.origin);
        holders.set(event.data.digest, set);
      } else if (event.type === 'BlobReleased') {
        holders.get(event.data.digest)?.delete(event.data.origin);
      } else if (event.type === 'BlobPersisted') {
        persisted.add(event.data.digest);
      }
    }
  } finally {
    await log.close();
  }
  return { holders, persisted };
};

export type CheckInput = {
  readonly fleet: Fleet;
  readonly history: readonly Op[];
  /** Which written digests are manifests (the rest are blobs). */
  readonly manifestDigests: ReadonlySet<string>;
  readonly faults: readonly Fault[];
  readonly seed: number;
  readonly minutes: number;
  readonly faultsEnded: number;
  readonly convergeMs: number;
  readonly healMs: number;
  readonly log: (line: string) => void;
};

const ociAccept = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

/** Runs `fn` up to five times, a second apart, for a service still settling after the faults. */
const fiveTries = async <T>(fn: () => Promise<T>): Promise<T> => {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= 4) throw error;
      await delay(1000);
    }
  }
};

/** A tag's digest on a proxy (null: no such tag), asked with read-your-writes. */
const tagOn = (base: string, key: TagKey, minPosition: number): Promise<string | null> =>
  fiveTries(async () => {
    const [repo, tag] = key.split(':') as [string, string];
    const response = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
      method: 'HEAD',
      headers: { accept: ociAccept, 'shoal-min-position': String(minPosition) },
      signal: AbortSignal.timeout(30_000),
    });
    if (response.status === 404) return null;
    if (response.status === 200) return response.headers.get('docker-content-digest');
    throw new Error(`HEAD ${key} → ${response.status}`);
  });

/** The bytes of a blob or manifest from a proxy; undefined when it has none. */
const contentOn = (
  base: string,
  repo: string,
  digest: string,
  manifest: boolean,
): Promise<Buffer | undefined> =>
  fiveTries(async () => {
    const path = `/v2/${repo}/${manifest ? 'manifests' : 'blobs'}/${digest}`;
    const response = await fetch(`${base}${path}`, {
      headers: { accept: ociAccept },
      signal: AbortSignal.timeout(60_000),
    });
    if (response.status === 404) return undefined;
    if (response.status !== 200) throw new Error(`GET ${path} → ${response.status}`);
    return Buffer.from(await response.arrayBuffer());
  });

export const check = async (input: CheckInput): Promise<Report> => {
  const { fleet, history, log } = input;
  const problems: string[] = [];
  const problem = (line: string) => {
    if (problems.length < 200) problems.push(line);
  };
  const acked = history.filter((op) => op.outcome === 'ok');
  const maxPosition = Math.max(0, ...acked.map((op) => op.position ?? 0));
  const candidates = finalCandidates(history);
  const proxyA = (fleet.a.proxies[0] as Member).url;
  const proxyB = fleet.b.proxy.url;
  let lost = 0;
  let corrupt = 0;
  let stale = 0;

  // --- final tags on A -------------------------------------------------------------------
  log(`checking ${candidates.size} tags on cluster A…`);
  const finalA = new Map<TagKey, string | null>();
  for (const [key, allowed] of candidates) {
    const value = await tagOn(proxyA, key, maxPosition);
    finalA.set(key, value);
    if (!allowed.has(value)) {
      lost++;
      problem(`lost: ${key} is ${value} on A; the history allows ${[...allowed].join(' | ')}`);
    }
  }

  // --- replication converges ------------------------------------------------------------
  log('waiting for cluster B to converge…');
  const signs = acked.filter((op) => op.kind === 'sign');
  const differing = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const [key, value] of finalA) {
      const onB = await tagOn(proxyB, key, 0).catch(() => 'unreachable');
      if (onB !== value) out.push(`${key}: A ${value}, B ${onB}`);
    }
    return out;
  };
  let convergedSeconds: number | null = null;
  let remaining: string[] = [];
  for (;;) {
    remaining = await differing();
    const elapsed = Date.now() - input.faultsEnded;
    if (remaining.length === 0) {
      convergedSeconds = Math.round(elapsed / 100) / 10;
      break;
    }
    if (elapsed > input.convergeMs) break;
    await delay(2000);
  }
  if (convergedSeconds === null) {
    lost += remaining.length;
    for (const line of remaining) problem(`not replicated: ${line}`);
  }

  // --- every acknowledged push, by digest, in both clusters ---------------------------
  const pushes = acked.filter((op) => op.kind === 'push' || op.kind === 'index');
  const { manifestDigests } = input;
  const checkedIn = new Map<string, Set<string>>([
    ['A', new Set()],
    ['B', new Set()],
  ]);
  // B holds tags' states: replication writes each tag's current value (a tag moved five times
  // while the replicator was behind is written once), so B must hold what A's tags point at
  // and what those need (platform manifests, blobs, signatures); a push superseded before the
  // replicator reached it is A's alone.
  const tagged = new Set([...finalA.values()].filter((v): v is string => v !== null));
  const inB = (op: Op) => tagged.has((op.kind === 'sign' ? op.subject : op.value) as string);
  log(`pulling back ${pushes.length} acknowledged pushes from both clusters…`);
  for (const op of [...pushes, ...signs]) {
    for (const [cluster, base] of [
      ['A', proxyA],
      ['B', proxyB],
    ] as const) {
      if (cluster === 'B' && !inB(op)) continue;
      const seen = checkedIn.get(cluster) as Set<string>;
      for (const digest of op.written ?? []) {
        const key = `${op.repo}@${digest}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const got = await contentOn(base, op.repo, digest, manifestDigests.has(digest)).catch(
          (error: unknown) => error as Error,
        );
        if (got instanceof Error || got === undefined) {
          lost++;
          problem(
            `lost: ${op.kind} #${op.id} ${op.repo}@${digest.slice(0, 19)} not in ${cluster}` +
              (got instanceof Error ? ` (${got.message})` : ''),
          );
        } else if (digestOf(got) !== digest) {
          corrupt++;
          problem(`corrupt: ${op.repo}@${digest.slice(0, 19)} in ${cluster}`);
        }
      }
    }
  }

  // --- referrers in B -------------------------------------------------------------------
  let missingReferrers = 0;
  for (const sign of signs.filter(inB)) {
    const response = await fetch(`${proxyB}/v2/${sign.repo}/referrers/${sign.subject}`, {
      signal: AbortSignal.timeout(30_000),
    }).catch((error: unknown) => error as Error);
    const listed =
      response instanceof Error || response.status !== 200
        ? []
        : (((await response.json()) as { manifests?: { digest: string }[] }).manifests ?? []).map(
            (m) => m.digest,
          );
    if (!listed.includes(sign.value as string)) {
      missingReferrers++;
      problem(`referrer missing in B: ${sign.repo}@${String(sign.subject).slice(0, 19)}`);
    }
  }
  // …and as a registry client sees them: `oras discover` in B, for a few subjects.
  const hostB = proxyB.replace(/^http:\/\//, '');
  for (const sign of signs.filter(inB).slice(0, 3)) {
    const found = await runToolAsync(oras, [
      'discover',
      '--plain-http',
      '--format',
      'json',
      `${hostB}/${sign.repo}@${sign.subject}`,
    ]);
    if (found.status !== 0 || !found.stdout.includes(sign.value as string)) {
      missingReferrers++;
      problem(
        `oras discover in B does not show ${String(sign.value).slice(0, 19)} for ` +
          `${sign.repo}@${String(sign.subject).slice(0, 19)}: ${(found.stdout + found.stderr).slice(0, 300)}`,
      );
    }
  }

  // --- reads in the history ------------------------------------------------------------
  const byTag = new Map<TagKey, Op[]>();
  for (const op of history) {
    if (!tagWrites.has(op.kind) || op.tag === undefined) continue;
    const key = `${op.repo}:${op.tag}`;
    byTag.set(key, [...(byTag.get(key) ?? []), op]);
  }
  for (const op of history) {
    if ((op.kind !== 'read' && op.kind !== 'pull') || op.outcome !== 'ok') continue;
    if (op.corrupt !== undefined) {
      corrupt += op.corrupt.length;
      problem(`corrupt read #${op.id} via ${op.via}: ${op.corrupt.join(', ')}`);
    }
    if (op.kind !== 'read') continue; // agents take no read-your-writes position
    const allowed = readCandidates(byTag.get(`${op.repo}:${op.tag}`) ?? [], op);
    if (!allowed.has(op.value ?? null)) {
      stale++;
      problem(
        `stale read #${op.id} ${op.repo}:${op.tag} via ${op.via} (min position ` +
          `${op.minPosition}): ${op.value}; allowed ${[...allowed].join(' | ')}`,
      );
    }
  }

  // --- R copies on A's origins ------------------------------------------------------------
  // Each owner (rendezvous over the ring) holds the blob on its disk — or evicted it under disk
  // pressure after it was written back: on record as its holder (the log's BlobPlaced, no
  // BlobReleased) and persisted in the backend (BlobPersisted), refilled by the next read.
  // Anything else is a missing copy. The checker reads A's log itself for the records.
  log('checking that every live blob has R copies on cluster A’s origins…');
  const live = new Set(
    pushes.flatMap((op) => (op.written ?? []).filter((d) => !manifestDigests.has(d))),
  );
  const headers = await serviceHeaders('origin', 'soak-checker');
  const ids = fleet.a.originIds;
  const onDisk = async (index: number, digest: string): Promise<boolean> => {
    const origin = fleet.a.origins[index] as Member;
    const response = await fetch(`${origin.url}/internal/blobs/${digest}?local=1`, {
      method: 'HEAD',
      headers,
      signal: AbortSignal.timeout(10_000),
    }).catch(() => undefined);
    return response?.status === 200;
  };
  let under: string[] = [];
  let evicted = 0;
  const healDeadline = Date.now() + input.healMs;
  for (;;) {
    const records = await readPlacement(fleet.brokers, fleet.a.topic);
    under = [];
    evicted = 0;
    for (const digest of live) {
      for (const owner of ownersOf(digest, ids, 2)) {
        if (await onDisk(ids.indexOf(owner), digest)) continue;
        if (records.holders.get(digest)?.has(owner) === true && records.persisted.has(digest)) {
          evicted++;
          continue;
        }
        under.push(`${digest} (owner ${owner})`);
      }
    }
    if (under.length === 0 || Date.now() > healDeadline) break;
    await delay(3000);
  }
  log(`  ${evicted} owner copies evicted under disk pressure (written back; a read refills them)`);
  for (const digest of under.slice(0, 20)) problem(`under-replicated on A: ${digest}`);

  // --- replay --verify on every build-index ---------------------------------------------
  log('replay --verify on every build-index (each stopped first)…');
  const replay: Record<string, boolean> = {};
  for (const bi of [...fleet.a.buildIndexes, fleet.b.buildIndex]) {
    await fleet.stop(bi);
    const result = await runToolAsync(
      process.execPath,
      [shoalCli, 'replay', '--verify', '--config', bi.config],
      { env: fleet.env, timeoutMs: 300_000 },
    );
    replay[bi.name] = result.status === 0;
    if (result.status !== 0) {
      problem(`replay --verify on ${bi.name}: ${(result.stdout + result.stderr).slice(-600)}`);
    }
  }

  // --- counts ----------------------------------------------------------------------------
  const byKind: Record<string, Record<string, number>> = {};
  for (const op of history) {
    const counts = (byKind[op.kind] ??= { ok: 0, fail: 0, info: 0 });
    counts[op.outcome] = (counts[op.outcome] ?? 0) + 1;
  }
  const faults = Object.fromEntries(
    faultKinds.map((kind) => {
      const of = input.faults.filter((f) => f.kind === kind);
      const skipped = of.filter((f) => f.skipped !== undefined);
      return [
        kind,
        {
          injected: of.length - skipped.length,
          skipped: skipped.length,
          ...(skipped[0]?.skipped !== undefined && { why: skipped[0].skipped }),
        },
      ];
    }),
  ) as Report['faults'];
  const faulted = (op: Op) =>
    input.faults.some((f) => f.skipped === undefined && op.start < f.end && op.end > f.start);
  const whileFaulted = history.filter(faulted);
  const share = (ops: readonly Op[]) =>
    ops.length === 0
      ? 1
      : Math.round((ops.filter((op) => op.outcome === 'ok').length / ops.length) * 1000) / 1000;

  const okWhileFaulted = whileFaulted
    .filter((op) => op.outcome === 'ok')
    .map((op) => op.end - op.start)
    .sort((a, b) => a - b);
  const passed =
    lost === 0 &&
    corrupt === 0 &&
    stale === 0 &&
    missingReferrers === 0 &&
    under.length === 0 &&
    convergedSeconds !== null &&
    Object.values(replay).every(Boolean);
  return {
    seed: input.seed,
    minutes: input.minutes,
    operations: { total: history.length, byKind },
    faults,
    lost,
    corrupt,
    stale,
    missingReferrers,
    underReplicated: under.length,
    evictedCopies: evicted,
    replay,
    convergedSeconds,
    availability: {
      whileFaulted: share(whileFaulted),
      overall: share(history),
      opsWhileFaulted: whileFaulted.length,
      retried: history.filter((op) => op.attempts > 1).length,
      p50MsWhileFaulted: percentile(okWhileFaulted, 0.5),
      p99MsWhileFaulted: percentile(okWhileFaulted, 0.99),
    },
    problems,
    passed,
  };
};
