import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import {
  clusterSchema,
  dataDirSchema,
  listenSchema,
  logLevelSchema,
  logSchema,
  readYourWritesSchema,
} from '../shared/roleConfig';

/**
 * build-index configuration. Every field has a default; `shoal build-index --help` lists them.
 * The composition root adds the `replication` section of the replicator it mounts.
 */
export const BuildIndexConfigSchema = Type.Object({
  cluster: clusterSchema(),
  dataDir: dataDirSchema('log, projections'),
  listen: listenSchema(5002),
  log: logSchema(),
  readYourWrites: readYourWritesSchema(
    'how long a read with Shoal-Min-Position waits before answering 503',
  ),
  logLevel: logLevelSchema(),
});

export type BuildIndexConfig = Static<typeof BuildIndexConfigSchema>;
