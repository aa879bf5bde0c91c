import type { Projection } from '../domain';
import { blobIndexProjection } from './blobIndex';
import { buildIndexProjection } from './buildIndex';
import { tagHistoryProjection } from './tagHistory';

/** Every projection by name, for the runner, `shoal replay` and `--projection NAME`. */
export const projections: Readonly<Record<string, Projection>> = {
  [buildIndexProjection.name]: buildIndexProjection as Projection,
  [tagHistoryProjection.name]: tagHistoryProjection as Projection,
  [blobIndexProjection.name]: blobIndexProjection as Projection,
};
