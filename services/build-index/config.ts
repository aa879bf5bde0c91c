import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { LogConfigSchema, LogLevelSchema } from '../shared/logConfig';

/**
 * build-index configuration. Every field has a default; `shoal build-index --help` lists them.
 * The composition root adds the `replication` section of the replicator it mounts.
 */
export const BuildIndexConfigSchema = Type.Object({
  cluster: Type.String({
    default: 'default',
    minLength: 1,
    description: 'cluster name stamped on events',
  }),
  dataDir: Type.String({ default: './.shoal', description: 'data directory (log, projections)' }),
  listen: Type.Object(
    {
      host: Type.String({ default: '127.0.0.1' }),
      port: Type.Integer({ default: 5002, minimum: 0, maximum: 65535 }),
    },
    { default: {} },
  ),
  log: LogConfigSchema,
  readYourWrites: Type.Object(
    {
      timeoutMs: Type.Integer({
        default: 5000,
        minimum: 0,
        description: 'how long a read with Shoal-Min-Position waits before answering 503',
      }),
    },
    { default: {} },
  ),
  logLevel: LogLevelSchema,
});

export type BuildIndexConfig = Static<typeof BuildIndexConfigSchema>;
