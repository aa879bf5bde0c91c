import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

/** GC's settings: the `gc` section of build-index's config, where scheduled runs happen. */
export const GcConfigSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'run GC on a schedule in this build-index',
    }),
    intervalMs: Type.Integer({
      default: 3_600_000,
      minimum: 1000,
      description: 'time between scheduled GC runs (the first one interval after start)',
    }),
    graceMs: Type.Integer({
      default: 7_200_000,
      minimum: 0,
      description:
        'untagged manifests and blobs pushed, uploaded or referenced more recently are kept; ' +
        "must be at least 4 × the proxies' gc.referenceWindowMs",
    }),
    batchSize: Type.Integer({
      default: 250,
      minimum: 1,
      description:
        'removals between two checks of the run (progress, run time) and two waits for the ' +
        "projections to apply them (a push's read-your-writes waits behind one batch at most)",
    }),
  },
  { default: {} },
);

export type GcConfig = Static<typeof GcConfigSchema>;
