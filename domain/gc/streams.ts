import type { RecordedEvent } from '../log/event';

// What a blob's or a manifest's stream says at one position. Every event that creates or
// removes a reference is on the stream of what it refers to (see eventTypes.ts), so these
// reads decide safely between a push and a GC run: whoever appended first wins, the other
// sees it here and gives up.

type Events = readonly RecordedEvent[];

/** The last `BlobCollected` of a blob's stream (before `before`, when given). */
export const lastCollection = (
  events: Events,
  before = Infinity,
): RecordedEvent<'BlobCollected'> | undefined => {
  let found: RecordedEvent<'BlobCollected'> | undefined;
  for (const event of events) {
    if (event.position >= before) break;
    if (event.type === 'BlobCollected') found = event as RecordedEvent<'BlobCollected'>;
  }
  return found;
};

/**
 * The events of the blob's current life: those after its last collection. An upload after a
 * collection starts a new life; copies, write-backs and links of an earlier life do not count.
 */
export const currentLife = (events: Events): RecordedEvent[] => {
  const last = lastCollection(events);
  return last === undefined ? [...events] : events.filter((e) => e.position > last.position);
};

/**
 * Whether `repo` links the blob just before `position`: its last upload or mount to `repo`
 * comes after every collection, deletion and unlink from `repo` before that position.
 */
export const linkedAt = (events: Events, repo: string, position: number): boolean => {
  let linked = false;
  for (const event of events) {
    if (event.position >= position) break;
    switch (event.type) {
      case 'BlobUploaded':
        if (event.data.repo === repo) linked = true;
        break;
      case 'BlobUnlinked':
        if (event.data.repo === repo) linked = false;
        break;
      case 'BlobCollected':
      case 'BlobDeleted':
        linked = false;
        break;
      default:
        break;
    }
  }
  return linked;
};

/** Whether the blob has bytes in the cluster just before `position` (not collected since). */
export const storedAt = (events: Events, position: number): boolean => {
  let stored = false;
  for (const event of events) {
    if (event.position >= position) break;
    if (event.type === 'BlobUploaded' || event.type === 'BlobPlaced') stored = true;
    if (event.type === 'BlobCollected') stored = false;
  }
  return stored;
};

/** Whether a manifest's stream has it pushed (not deleted or collected) before `position`. */
export const manifestLiveAt = (events: Events, position: number): boolean => {
  let live = false;
  for (const event of events) {
    if (event.position >= position) break;
    if (event.type === 'ManifestPushed') live = true;
    if (event.type === 'ManifestDeleted' || event.type === 'ManifestCollected') live = false;
  }
  return live;
};

/** Backends the blob was written back to in its current life. */
export const persistedIn = (events: Events): string[] => {
  const out: string[] = [];
  for (const event of currentLife(events)) {
    if (event.type === 'BlobPersisted' && !out.includes(event.data.backend)) {
      out.push(event.data.backend);
    }
  }
  return out;
};

/** Whether `origin` recorded a copy (`BlobPlaced`) in the blob's current life. */
export const placedInLife = (events: Events, origin: string): boolean =>
  currentLife(events).some((e) => e.type === 'BlobPlaced' && e.data.origin === origin);

/**
 * The collection whose backend objects are still to be deleted: the last `BlobCollected`,
 * when it names an eraser and no `BlobErased` for it follows. A write-back of the blob's new
 * life waits until it is done (see the origin's write-back).
 */
export const pendingErasure = (
  events: Events,
): { readonly collected: number; readonly eraser: string } | undefined => {
  const last = lastCollection(events);
  if (last?.data.eraser === undefined) return undefined;
  const erased = events.some((e) => e.type === 'BlobErased' && e.data.collected === last.position);
  return erased ? undefined : { collected: last.position, eraser: last.data.eraser };
};

/** What the blob's life before its last collection routed or wrote back to. */
export const collectedLife = (
  events: Events,
):
  | { collected: RecordedEvent<'BlobCollected'>; repos: string[]; backends: string[] }
  | undefined => {
  const last = lastCollection(events);
  if (last === undefined) return undefined;
  const before = lastCollection(events, last.position);
  const repos = new Set<string>();
  const backends = new Set<string>();
  for (const event of events) {
    if (event.position >= last.position) break;
    if (before !== undefined && event.position <= before.position) continue;
    if (event.type === 'BlobUploaded') repos.add(event.data.repo);
    if (event.type === 'BlobPersisted') backends.add(event.data.backend);
  }
  for (const repo of last.data.repos) repos.add(repo);
  return { collected: last, repos: [...repos], backends: [...backends] };
};
