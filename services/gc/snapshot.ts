import type { BlobNode, ManifestNode, ProjectionStore, RetentionRule } from '../../domain';
import type {
  BlobRefDoc,
  ManifestRefDoc,
  RetentionRuleDoc,
  RingMemberDoc,
} from '../../projections';
import {
  placementPartitions,
  placementProjection,
  policiesProjection,
  policyPartitions,
  referencesProjection,
  splitManifestId,
} from '../../projections';
import { listPartition } from '../shared/listPartition';

const ms = (iso: string) => Date.parse(iso);

/** What a GC run decides on: the references, the active retention rules, the ring. */
export type GcSnapshot = {
  readonly manifests: ManifestNode[];
  readonly blobs: BlobNode[];
  readonly rules: RetentionRule[];
  readonly members: string[];
};

/** The active retention rules, in id order. */
export const activeRules = async (store: ProjectionStore): Promise<RetentionRuleDoc[]> => {
  const rules: RetentionRuleDoc[] = [];
  for await (const { doc } of listPartition<RetentionRuleDoc>(
    store,
    policiesProjection.name,
    policyPartitions.retention,
  )) {
    if (doc.removedPosition === undefined) rules.push(doc);
  }
  return rules;
};

/** Reads the projections GC decides on (the caller brought them up to date). */
export const loadSnapshot = async (store: ProjectionStore): Promise<GcSnapshot> => {
  const manifests: ManifestNode[] = [];
  for await (const { id, doc } of listPartition<ManifestRefDoc>(
    store,
    referencesProjection.name,
    'manifests',
    5000,
  )) {
    if (doc.manifest === undefined || doc.touched === undefined) continue;
    const { repo, digest } = splitManifestId(id);
    manifests.push({
      repo,
      digest,
      ...doc.manifest,
      tags: Object.entries(doc.tags).map(([tag, t]) => ({
        tag,
        position: t.position,
        at: ms(t.at),
      })),
      touchedPosition: doc.touched.position,
      touchedAt: ms(doc.touched.at),
    });
  }
  const blobs: BlobNode[] = [];
  for await (const { id, doc } of listPartition<BlobRefDoc>(
    store,
    referencesProjection.name,
    'blobs',
    5000,
  )) {
    const links = Object.entries(doc.links).map(([repo, t]) => ({
      repo,
      at: ms(t.at),
      ...(doc.deleted !== undefined && t.position < doc.deleted && { dead: true }),
    }));
    blobs.push({
      digest: id,
      size: doc.size,
      links,
      touchedAt: ms(doc.touched.at),
      ...(doc.deleted !== undefined && links.every((l) => l.dead === true) && { deleted: true }),
    });
  }
  const members: string[] = [];
  for await (const { id } of listPartition<RingMemberDoc>(
    store,
    placementProjection.name,
    placementPartitions.ring,
  )) {
    members.push(id);
  }
  return { manifests, blobs, rules: await activeRules(store), members };
};
