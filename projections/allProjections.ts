import type { Projection } from '../domain';
import { blobIndexProjection } from './blobIndex';
import { buildIndexProjection } from './buildIndex';
import { placementProjection } from './placement';
import { manifestIndexProjection } from './manifestIndex';
import { replicationProjection } from './replication';
import { policiesProjection } from './policies';
import { referencesProjection } from './references';
import { referrersProjection } from './referrers';
import { tagHistoryProjection } from './tagHistory';

/** Every projection by name, for the runner, `shoal replay` and `--projection NAME`. */
export const allProjections: Readonly<Record<string, Projection>> = {
  [buildIndexProjection.name]: buildIndexProjection as Projection,
  [tagHistoryProjection.name]: tagHistoryProjection as Projection,
  [blobIndexProjection.name]: blobIndexProjection as Projection,
  [placementProjection.name]: placementProjection as Projection,
  [manifestIndexProjection.name]: manifestIndexProjection as Projection,
  [replicationProjection.name]: replicationProjection as Projection,
  [referencesProjection.name]: referencesProjection as Projection,
  [referrersProjection.name]: referrersProjection as Projection,
  [policiesProjection.name]: policiesProjection as Projection,
};
