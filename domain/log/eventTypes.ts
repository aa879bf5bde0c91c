import type { Static, TSchema } from '@sinclair/typebox';
import {
  BlobCollectedV1,
  BlobDeletedV1,
  BlobErasedV1,
  BlobPersistedV1,
  BlobPlacedV1,
  BlobReferencedV1,
  BlobReleasedV1,
  BlobUnlinkedV1,
  BlobUploadedV1,
  blobStream,
} from '../blob';
import {
  ManifestCollectedV1,
  ManifestDeletedV1,
  ManifestPushedV1,
  ManifestReferencedV1,
  manifestStream,
} from '../manifest';
import { OriginJoinedV1, OriginLeftV1, ringStream } from '../origin';
import { QuotaRemovedV1, QuotaSetV1, quotaStream } from '../quota';
import {
  ReplicationFailedV1,
  ReplicationRuleAddedV1,
  ReplicationRuleRemovedV1,
  ReplicationSucceededV1,
  ruleStream,
} from '../replication';
import { RetentionRuleAddedV1, RetentionRuleRemovedV1, retentionStream } from '../retention';
import { TagDeletedV1, TagPushedV1, tagStream } from '../tag';

type Definition<S extends TSchema> = {
  /** The version writers emit. Readers accept every version listed in `schemas`. */
  readonly version: number;
  readonly schemas: Readonly<Record<number, S>>;
  /** The stream an event is about, derived from its data so writers cannot disagree. */
  readonly stream: (data: Static<S>) => string;
};

const define = <S extends TSchema>(schema: S, stream: (data: Static<S>) => string) =>
  ({ version: 1, schemas: { 1: schema }, stream }) satisfies Definition<S>;

/** Every event type Shoal writes, its schema per version and the stream it belongs to. */
export const eventDefinitions = {
  BlobUploaded: define(BlobUploadedV1, (d) => blobStream(d.digest)),
  BlobPlaced: define(BlobPlacedV1, (d) => blobStream(d.digest)),
  BlobReleased: define(BlobReleasedV1, (d) => blobStream(d.digest)),
  BlobPersisted: define(BlobPersistedV1, (d) => blobStream(d.digest)),
  BlobDeleted: define(BlobDeletedV1, (d) => blobStream(d.digest)),
  // Every event that creates or removes a reference to a blob is on the blob's stream, so
  // that GC's compare-and-swap on that stream sees them all (see domain/gc).
  BlobReferenced: define(BlobReferencedV1, (d) => blobStream(d.digest)),
  BlobUnlinked: define(BlobUnlinkedV1, (d) => blobStream(d.digest)),
  BlobCollected: define(BlobCollectedV1, (d) => blobStream(d.digest)),
  BlobErased: define(BlobErasedV1, (d) => blobStream(d.digest)),
  ManifestPushed: define(ManifestPushedV1, (d) => manifestStream(d.repo, d.digest)),
  ManifestDeleted: define(ManifestDeletedV1, (d) => manifestStream(d.repo, d.digest)),
  ManifestReferenced: define(ManifestReferencedV1, (d) => manifestStream(d.repo, d.digest)),
  ManifestCollected: define(ManifestCollectedV1, (d) => manifestStream(d.repo, d.digest)),
  TagPushed: define(TagPushedV1, (d) => tagStream(d.repo, d.tag)),
  TagDeleted: define(TagDeletedV1, (d) => tagStream(d.repo, d.tag)),
  ReplicationRuleAdded: define(ReplicationRuleAddedV1, (d) => ruleStream(d.id)),
  ReplicationRuleRemoved: define(ReplicationRuleRemovedV1, (d) => ruleStream(d.id)),
  ReplicationSucceeded: define(ReplicationSucceededV1, (d) => ruleStream(d.ruleId)),
  ReplicationFailed: define(ReplicationFailedV1, (d) => ruleStream(d.ruleId)),
  RetentionRuleAdded: define(RetentionRuleAddedV1, (d) => retentionStream(d.id)),
  RetentionRuleRemoved: define(RetentionRuleRemovedV1, (d) => retentionStream(d.id)),
  QuotaSet: define(QuotaSetV1, (d) => quotaStream(d.namespace)),
  QuotaRemoved: define(QuotaRemovedV1, (d) => quotaStream(d.namespace)),
  OriginJoined: define(OriginJoinedV1, () => ringStream),
  OriginLeft: define(OriginLeftV1, () => ringStream),
} as const;

export type EventType = keyof typeof eventDefinitions;
export const eventTypes = Object.keys(eventDefinitions) as EventType[];

/** The data of an event type at its current version. */
export type EventData<T extends EventType> = Static<(typeof eventDefinitions)[T]['schemas'][1]>;

export const isEventType = (type: string): type is EventType =>
  Object.prototype.hasOwnProperty.call(eventDefinitions, type);
