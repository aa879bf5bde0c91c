import type { Digest, EventData, Position, RecordedEvent, ShoalEvent } from '../../domain';
import { backoffDelay, destinationAllowed, givesUp, matchesGlob, ruleSelects } from '../../domain';
import type { ReferrerEntryDoc, ReplicationRuleDoc, TagDoc } from '../../projections';
import { buildIndexProjection, referrersPartition, referrersProjection } from '../../projections';
import type { WriterContext } from '../shared/events';
import { deterministicEventId, newEvent } from '../shared/events';
import type { CopyProgress } from './client/replicationApi';
import type { CopyContext, MountHints } from './copier';
import { deleteTag, replicateTag } from './copier';
import type { SourceReferrers } from './referrers';
import { copyReferrersOf, manifestsOfTree, referrersTag, replicateReferrer } from './referrers';
import type { ReplicatorDeps, RuleActivity } from './replicator';
import type { Watermark } from './waits';
import { createWatermark, sleep, unlessAborted } from './waits';

/** What a rule's worker shares with the replicator that runs it. */
export type RuleWorkerContext = {
  readonly deps: ReplicatorDeps;
  /** Jitter source, [0, 1). */
  readonly random: () => number;
  /** Where the rule's destination holds which blob (shared by rules with one destination). */
  readonly mountHints: MountHints;
  /** Appends with retries until it succeeds or `signal` aborts. */
  readonly appendDurably: (events: ShoalEvent[], signal: AbortSignal) => Promise<void>;
};

export type RuleWorker = {
  readonly rule: ReplicationRuleDoc;
  readonly activity: () => RuleActivity;
  readonly stop: () => Promise<void>;
  /** Settles when the worker stops following the log; rejects when it failed (the log). */
  readonly done: Promise<void>;
};

type Outcome =
  | { readonly kind: 'succeeded'; readonly digest?: string }
  /** Nothing to record (a backfilling rule meets a tag that no longer exists). */
  | { readonly kind: 'none' }
  | { readonly kind: 'gave-up'; readonly error: string; readonly attempt: number };

type Item = {
  readonly event: RecordedEvent<'TagPushed' | 'TagDeleted' | 'ManifestPushed'>;
  readonly repo: string;
  /** For a referrer: its subject's referrers tag (`sha256-<hex>`), what its outcome names. */
  readonly tag: string;
  /** Set for a manifest with a subject pushed after the rule started (not a tag change). */
  readonly referrer?: { readonly digest: Digest; readonly subject: Digest };
  attempt: number;
  error?: string;
  retryAt?: string;
  copying?: CopyProgress | undefined;
  outcome?: Outcome;
};

const isTagChange = (event: RecordedEvent): event is RecordedEvent<'TagPushed' | 'TagDeleted'> =>
  event.type === 'TagPushed' || event.type === 'TagDeleted';

/** A manifest with a subject (a signature, an SBOM): it follows its subject to destinations. */
const isReferrerPush = (
  event: RecordedEvent,
): event is RecordedEvent<'ManifestPushed'> & { data: { subject: string } } =>
  event.type === 'ManifestPushed' && event.data.subject !== undefined;

const messageOf = (error: unknown): string =>
  (error instanceof Error ? error.message : String(error)).slice(0, 4000);

/** `ReplicationSucceeded`, one per (rule, destination, source position). */
const succeededEvent = (
  writer: WriterContext,
  data: EventData<'ReplicationSucceeded'>,
  causationId: string,
): ShoalEvent<'ReplicationSucceeded'> =>
  newEvent(writer, 'ReplicationSucceeded', data, {
    id: deterministicEventId(
      'ReplicationSucceeded',
      data.ruleId,
      data.destination,
      data.sourcePosition,
    ),
    correlationId: data.ruleId,
    causationId,
  });

/**
 * `ReplicationFailed`. Giving up is an outcome like success: one per (rule, destination,
 * source position). A failed attempt that will be retried is an observation: each attempt is
 * its own event (its `retryAt` is part of the id), so attempts after a restart are recorded
 * too.
 */
const failedEvent = (
  writer: WriterContext,
  data: EventData<'ReplicationFailed'>,
  causationId: string,
): ShoalEvent<'ReplicationFailed'> =>
  newEvent(writer, 'ReplicationFailed', data, {
    id: deterministicEventId(
      'ReplicationFailed',
      data.ruleId,
      data.destination,
      data.sourcePosition,
      ...(data.retryAt === undefined ? ['final'] : [data.attempt, data.retryAt]),
    ),
    correlationId: data.ruleId,
    causationId,
  });

/**
 * One rule's worker: follows the log from the rule's recorded position, admits each matching
 * tag change (at most `concurrency` unsettled at once; one tag at a time, in log order), makes
 * the destination's tag what the source's is now, and records the outcomes in source order.
 * See {@link createReplicator} for the guarantees.
 */
export const startRuleWorker = (
  ctx: RuleWorkerContext,
  rule: ReplicationRuleDoc,
  head: Watermark,
): RuleWorker => {
  const { deps, random, appendDurably } = ctx;
  const { log, store, projections, config, logger } = deps;
  const writer = { clock: deps.clock, cluster: deps.cluster, actor: 'replicator' };
  const projectionTimeoutMs = config.timeoutMs;
  const controller = new AbortController();
  const signal = controller.signal;
  const wlog = logger.child({ rule: rule.id, destination: rule.destination });
  const destination = deps.destination(rule.destination);
  const queue: Item[] = [];
  const queueChanged = createWatermark(0);
  let changes = 0;
  const tagTails = new Map<string, Promise<void>>();
  /** Per tag: the destination equals the source as of this build-index position. */
  const synced = new Map<string, { position: Position; digest?: string }>();
  let cursor = rule.lastPosition;
  let flushing: Promise<void> = Promise.resolve();
  let stopped = false;

  const copyContext = (item: Item): CopyContext => ({
    source: deps.source,
    destination,
    chunkSize: config.chunkSizeBytes,
    blobConcurrency: config.blobConcurrency,
    mountHints: ctx.mountHints,
    onProgress: (progress) => {
      item.copying = progress;
    },
    signal,
  });

  const backfilling = (item: Item) => item.event.position < rule.addedPosition;
  // A rule on the log may name a destination this replicator's config does not allow (added
  // elsewhere, or before the allowlist changed): its changes are given up, nothing is sent.
  const allowed = destinationAllowed(config.allowedDestinations, rule.destination);
  if (!allowed) {
    wlog.error('destination not in replication.allowedDestinations: nothing is replicated');
  }

  /**
   * Waits until the tags and referrers read next are as of at least the log's head: never
   * older than any change seen so far, including those another replicator may have written
   * already. Resolves with the build-index position they are read at.
   */
  const readableAtHead = async (): Promise<Position> => {
    const headNow = await log.head();
    for (const name of [buildIndexProjection.name, referrersProjection.name]) {
      await unlessAborted(projections.waitFor(headNow, projectionTimeoutMs, name), signal);
    }
    return projections.position(buildIndexProjection.name);
  };

  const sourceReferrers: SourceReferrers = async (repo, subject) => {
    const out: Array<{ digest: Digest }> = [];
    const partition = referrersPartition(repo, subject);
    for (let after: string | undefined; ;) {
      const page = await store.list<ReferrerEntryDoc>(referrersProjection.name, partition, {
        limit: 500,
        ...(after !== undefined && { after }),
      });
      out.push(...page.map((row) => ({ digest: row.id as Digest })));
      if (page.length < 500) return out;
      after = page[page.length - 1]?.id;
    }
  };

  /**
   * A referrer pushed after the rule started: copied if the source still has it and the
   * destination has its subject (else it travels with the subject's tag, later).
   */
  const syncReferrer = async (
    item: Item,
    referrer: { readonly digest: Digest; readonly subject: Digest },
  ): Promise<Outcome> => {
    await readableAtHead();
    const partition = referrersPartition(item.repo, referrer.subject);
    const still = await store.get<ReferrerEntryDoc>(referrersProjection.name, {
      partition,
      id: referrer.digest,
    });
    if (still === undefined) return { kind: 'none' };
    const result = await replicateReferrer(
      copyContext(item),
      sourceReferrers,
      item.repo,
      referrer.subject,
      referrer.digest,
    );
    if (result === 'absent') return { kind: 'none' };
    deps.metrics?.replicated(rule, result);
    if (result === 'written') {
      wlog.debug({ repo: item.repo, ...referrer }, 'referrer replicated');
    }
    return { kind: 'succeeded', digest: referrer.digest };
  };

  /** Makes the destination's tag what the source's is now. */
  const sync = async (item: Item): Promise<Outcome> => {
    if (item.referrer !== undefined) return syncReferrer(item, item.referrer);
    const key = `${item.repo}:${item.tag}`;
    const known = synced.get(key);
    if (known !== undefined && known.position >= item.event.position) {
      // A later value of this tag is at the destination already (coalesced).
      return backfilling(item)
        ? { kind: 'none' }
        : { kind: 'succeeded', ...(known.digest !== undefined && { digest: known.digest }) };
    }
    const asOf = await readableAtHead();
    const current = await store.get<TagDoc>(buildIndexProjection.name, {
      partition: item.repo,
      id: item.tag,
    });
    item.copying = undefined;
    if (current !== undefined) {
      const digest = current.digest as Digest;
      const copy = copyContext(item);
      const result = await replicateTag(copy, item.repo, item.tag, digest);
      // The tag's signatures, SBOMs and other referrers (of the index and of its children)
      // go with it, after it: their subjects are there by then.
      const carried = await copyReferrersOf(
        copy,
        sourceReferrers,
        item.repo,
        await manifestsOfTree(copy, digest),
      );
      synced.set(key, { position: asOf, digest });
      deps.metrics?.replicated(rule, carried > 0 ? 'written' : result);
      if (result === 'written') {
        wlog.debug({ repo: item.repo, tag: item.tag, digest }, 'tag replicated');
      }
      return { kind: 'succeeded', digest };
    }
    if (backfilling(item)) {
      synced.set(key, { position: asOf });
      return { kind: 'none' };
    }
    const deleted = await deleteTag(copyContext(item), item.repo, item.tag);
    synced.set(key, { position: asOf });
    if (deleted.kind === 'unsupported') {
      wlog.warn({ repo: item.repo, tag: item.tag, reason: deleted.reason }, 'tag not deleted');
      return { kind: 'gave-up', error: deleted.reason, attempt: item.attempt + 1 };
    }
    deps.metrics?.replicated(rule, 'deleted');
    return { kind: 'succeeded' };
  };

  const outcomeEvent = (item: Item): ShoalEvent | undefined => {
    const outcome = item.outcome;
    const common = {
      ruleId: rule.id,
      repo: item.repo,
      tag: item.tag,
      destination: rule.destination,
      sourcePosition: item.event.position,
    };
    if (outcome === undefined || outcome.kind === 'none') return undefined;
    if (outcome.kind === 'succeeded') {
      return succeededEvent(
        writer,
        { ...common, ...(outcome.digest !== undefined && { digest: outcome.digest }) },
        item.event.id,
      );
    }
    return failedEvent(
      writer,
      { ...common, attempt: outcome.attempt, error: outcome.error.slice(0, 4000) },
      item.event.id,
    );
  };

  /** Records the settled changes at the front of the queue, in order, in one append. */
  const flush = () => {
    flushing = flushing.then(async () => {
      let n = 0;
      while (n < queue.length && (queue[n] as Item).outcome !== undefined) n++;
      if (n === 0) return;
      const done = queue.slice(0, n);
      const events = done.map(outcomeEvent).filter((e): e is ShoalEvent => e !== undefined);
      if (events.length > 0) await appendDurably(events, signal);
      queue.splice(0, n);
      queueChanged.raise(++changes);
    });
    flushing = flushing.catch((error: unknown) => {
      if (!signal.aborted) wlog.error({ err: error }, 'cannot record outcomes');
    });
  };

  const work = async (item: Item) => {
    if (!allowed) {
      item.outcome = {
        kind: 'gave-up',
        error: `destination ${rule.destination} is not in replication.allowedDestinations`,
        attempt: 1,
      };
      flush();
      return;
    }
    for (;;) {
      if (stopped) return;
      try {
        item.outcome = await sync(item);
        item.error = undefined;
        item.retryAt = undefined;
        flush();
        return;
      } catch (error) {
        if (stopped) return;
        item.attempt += 1;
        const message = messageOf(error);
        deps.metrics?.failed(rule);
        if (givesUp(item.attempt, config.maxAttempts)) {
          wlog.warn(
            { repo: item.repo, tag: item.tag, attempt: item.attempt, err: error },
            'replication given up after the last attempt',
          );
          item.outcome = { kind: 'gave-up', error: message, attempt: item.attempt };
          flush();
          return;
        }
        const delay = backoffDelay(item.attempt, config.backoff, random());
        const retryAt = new Date(deps.clock.now() + delay).toISOString();
        item.error = message;
        item.retryAt = retryAt;
        wlog.warn(
          { repo: item.repo, tag: item.tag, attempt: item.attempt, retryAt, error: message },
          'replication failed; will retry',
        );
        await log
          .append([
            failedEvent(
              writer,
              {
                ruleId: rule.id,
                repo: item.repo,
                tag: item.tag,
                destination: rule.destination,
                sourcePosition: item.event.position,
                attempt: item.attempt,
                error: message,
                retryAt,
              },
              item.event.id,
            ),
          ])
          .catch((appendError: unknown) =>
            wlog.warn({ err: appendError }, 'cannot record a replication failure'),
          );
        await sleep(delay, signal);
      }
    }
  };

  const admit = async (event: Item['event']) => {
    while (queue.length >= config.concurrency && !stopped) {
      await queueChanged.above(changes, signal);
    }
    if (stopped) return;
    let item: Item;
    let key: string;
    let before: Promise<unknown>;
    if (event.type === 'ManifestPushed') {
      const subject = event.data.subject as Digest;
      const referrer = { digest: event.data.digest as Digest, subject };
      item = { event, repo: event.data.repo, tag: referrersTag(subject), referrer, attempt: 0 };
      // After every change admitted before it: a tag being copied now either carries this
      // referrer or has put its subject at the destination by then.
      key = `~referrer:${event.position}`;
      before = Promise.allSettled([...tagTails.values()]);
    } else {
      item = { event, repo: event.data.repo, tag: event.data.tag, attempt: 0 };
      key = `${item.repo}:${item.tag}`;
      before = tagTails.get(key) ?? Promise.resolve();
    }
    queue.push(item);
    const run = before.then(() => work(item));
    tagTails.set(key, run);
    void run.finally(() => {
      if (tagTails.get(key) === run) tagTails.delete(key);
    });
  };

  const follow = async () => {
    wlog.info({ from: cursor }, 'replicating');
    while (!stopped) {
      const page = await log.readBatch(cursor + 1, { limit: 500 });
      if (page.length === 0) {
        await head.above(cursor, signal);
        continue;
      }
      for (const event of page) {
        if (stopped) return;
        if (
          isTagChange(event) &&
          ruleSelects(rule, rule.addedPosition, {
            kind: event.type === 'TagPushed' ? 'pushed' : 'deleted',
            repo: event.data.repo,
            tag: event.data.tag,
            position: event.position,
          })
        ) {
          await admit(event);
        } else if (
          isReferrerPush(event) &&
          // Referrers pushed before the rule go with their tags (a backfill reads them).
          event.position > rule.addedPosition &&
          matchesGlob(rule.repoPattern, event.data.repo)
        ) {
          await admit(event);
        }
        cursor = Math.max(cursor, event.position);
      }
      head.raise(cursor);
    }
  };

  const done = follow().catch((error: unknown) => {
    if (!stopped) wlog.error({ err: error }, 'replication worker failed');
    throw error;
  });

  const settled = (): Position =>
    queue.length === 0 ? cursor : (queue[0] as Item).event.position - 1;

  return {
    rule,
    activity: () => {
      const pending = queue.filter((item) => item.outcome === undefined);
      const first = queue[0];
      return {
        state: pending.some((i) => i.retryAt !== undefined)
          ? 'retrying'
          : queue.length > 0
            ? 'replicating'
            : 'caught-up',
        settled: settled(),
        read: cursor,
        ...(first !== undefined && {
          firstPending: { position: first.event.position, at: first.event.metadata.at },
        }),
        inFlight: pending.map((item) => ({
          position: item.event.position,
          repo: item.repo,
          tag: item.tag,
          attempt: item.attempt,
          ...(item.error !== undefined && { error: item.error }),
          ...(item.retryAt !== undefined && { retryAt: item.retryAt }),
          ...(item.copying !== undefined && { copying: { ...item.copying } }),
        })),
      };
    },
    stop: async () => {
      stopped = true;
      controller.abort();
      await done.catch(() => undefined);
      await Promise.allSettled([...tagTails.values()]);
      await flushing;
    },
    done,
  };
};
