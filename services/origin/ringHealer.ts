import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { owners as ownersOf } from '../../domain/placement';
import type { Logger } from '../shared/logger';
import type { MemberLiveness } from './memberLiveness';
import type { RingView } from './ringView';

const pageSize = 1000;
/** How often the ring's members are compared with the last pass's (a change heals at once). */
const memberCheckMs = 2000;
/** While some blob lacks copies (others' fills, sources not there yet), passes come this often. */
const unhealedIntervalMs = 5000;
const results = ['filled', 'failed'] as const;

export type HealPass = {
  /** Blobs on record (those the placement projection knows a holder of). */
  readonly scanned: number;
  /** Blobs with fewer holders among their owners than R (or the members, if fewer). */
  readonly underReplicated: number;
  readonly filled: number;
  readonly failed: number;
  /** Copies this origin dropped of blobs it no longer owns, their owners holding theirs. */
  readonly released: number;
};

/**
 * Heals the ring: after an origin leaves or joins, the owners of some blobs change (rendezvous
 * hashing over the new members), and a new owner holds none of them. Each origin looks for the
 * blobs it owns but never reported holding and fills them — from the peers that hold them, then
 * the backends, as a read would — until every blob has R copies among its owners again. A pass
 * runs when the members change and every `intervalMs`, and every few seconds while some blob
 * still lacks copies (another owner's fill, a source not there yet): a failed fill is tried
 * again on the next pass. Blobs evicted from this origin's disk by the watermark
 * are still on record as held here, so healing never undoes eviction (they fill on a read).
 *
 * The other way round, an origin that holds blobs it no longer owns (it was away while the
 * ring changed, or the ring grew) drops its copies once every owner holds its own (`release`:
 * checked on the owners' disks, recorded as `BlobReleased`), so a returning origin does not
 * keep what others now serve.
 *
 * `shoal_origin_under_replicated_blobs` counts, at each pass, the blobs with fewer copies among
 * their owners than R: zero once the ring is healed.
 */
export const createRingHealer = (deps: {
  ring: RingView;
  selfId: string;
  /** Fills a blob this origin owns and lacks; resolves once stored and placed here. */
  fill: (digest: string) => Promise<void>;
  /** Drops this origin's copy of a blob `owners` (not this origin) hold; whether it did. */
  release: (digest: string, owners: readonly string[]) => Promise<boolean>;
  /** Members down for longer than a grace: copies are placed as if they had left. */
  liveness?: MemberLiveness;
  logger: Logger;
  registry: Registry;
  intervalMs: number;
  concurrency: number;
}) => {
  const { ring, selfId, logger } = deps;
  const underReplicated = new Gauge({
    name: 'shoal_origin_under_replicated_blobs',
    help: 'Blobs with fewer copies among their owners than the replicas R, at the last healing pass',
    registers: [deps.registry],
  });
  const healed = new Counter({
    name: 'shoal_origin_healed_blobs_total',
    help: 'Blobs this origin owned but lacked and filled while healing the ring, by result',
    labelNames: ['result'] as const,
    registers: [deps.registry],
  });
  for (const result of results) healed.inc({ result }, 0);
  const released = new Counter({
    name: 'shoal_origin_released_blobs_total',
    help: 'Copies this origin dropped of blobs it no longer owns, once their owners held theirs',
    registers: [deps.registry],
  });
  /** Whether the last pass left some blob with fewer than R copies. */
  let unhealed = false;

  const pass = async (): Promise<HealPass> => {
    const ids = (await ring.members()).map((m) => m.id);
    // Lost members (down past the grace, not left) hold nothing as far as placement goes: the
    // next origins in rendezvous order stand in for them until they answer again.
    const lost = new Set(deps.liveness?.lost(ids) ?? []);
    const live = ids.filter((id) => !lost.has(id));
    const wanted = Math.min(ring.replicas, live.length);
    const missing: string[] = [];
    const surplus: { digest: string; owners: string[] }[] = [];
    let scanned = 0;
    let under = 0;
    let after: string | undefined;
    for (;;) {
      const page = await ring.holdings({ ...(after !== undefined && { after }), limit: pageSize });
      for (const { digest, origins } of page) {
        scanned += 1;
        const holders = (list: readonly string[]) => list.filter((id) => origins.includes(id));
        const placed = ownersOf(digest, live, ring.replicas);
        if (holders(placed).length < wanted) under += 1;
        if (placed.includes(selfId) && !origins.includes(selfId)) missing.push(digest);
        // A copy neither the ring nor a stand-in needs, once every owner holds its own.
        const owners = lost.size === 0 ? placed : ownersOf(digest, ids, ring.replicas);
        if (
          origins.includes(selfId) &&
          !owners.includes(selfId) &&
          !placed.includes(selfId) &&
          holders(owners).length === owners.length
        ) {
          surplus.push({ digest, owners });
        }
      }
      if (page.length < pageSize) break;
      after = page[page.length - 1]?.digest;
    }
    underReplicated.set(under);
    let filled = 0;
    let failed = 0;
    const next = async (): Promise<void> => {
      for (let digest = missing.shift(); digest !== undefined; digest = missing.shift()) {
        try {
          await deps.fill(digest);
          filled += 1;
          healed.inc({ result: 'filled' });
        } catch (error) {
          failed += 1;
          healed.inc({ result: 'failed' });
          logger.warn({ err: error, digest }, 'cannot heal a blob this origin owns yet');
        }
      }
    };
    const count = missing.length;
    await Promise.all(Array.from({ length: Math.min(deps.concurrency, count) }, next));
    let dropped = 0;
    for (const { digest, owners } of surplus) {
      try {
        if (await deps.release(digest, owners)) {
          dropped += 1;
          released.inc();
        }
      } catch (error) {
        logger.warn({ err: error, digest }, 'cannot release a blob this origin no longer owns');
      }
    }
    if (count > 0 || under > 0 || surplus.length > 0) {
      logger.info(
        { scanned, underReplicated: under, filled, failed, released: dropped },
        'ring healing pass',
      );
    }
    unhealed = under > 0 || dropped < surplus.length;
    return { scanned, underReplicated: under, filled, failed, released: dropped };
  };

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let members = '';
  let lastPass = 0;
  const tick = async () => {
    await deps.liveness?.check();
    const ids = (await ring.members()).map((m) => m.id).sort();
    const now = `${ids.join(',')} lost ${(deps.liveness?.lost(ids) ?? []).join(',')}`;
    const every = unhealed ? Math.min(unhealedIntervalMs, deps.intervalMs) : deps.intervalMs;
    if (now === members && Date.now() - lastPass < every) return;
    members = now;
    lastPass = Date.now();
    await pass();
  };

  return {
    /** One pass now (after the current one, if any). */
    pass: (): Promise<HealPass> => {
      const run = running.then(pass, pass);
      running = run.catch(() => undefined);
      return run;
    },
    start: () => {
      if (deps.intervalMs === 0 || timer !== undefined) return;
      timer = setInterval(() => {
        running = running.then(tick).catch((error: unknown) => {
          logger.warn({ err: error }, 'ring healing pass failed');
        });
      }, memberCheckMs);
      timer.unref();
    },
    stop: async () => {
      clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
};

export type RingHealer = ReturnType<typeof createRingHealer>;
