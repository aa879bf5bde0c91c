import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import { roleConfig } from '../shared/roleConfig';
import { AuthConfigSchema } from '../shared/security/authConfig';

/**
 * build-index configuration. Every field has a default; `shoal build-index --help` lists them.
 * The composition root adds the `replication` section of the replicator it mounts.
 */
export const BuildIndexConfigSchema = Type.Object({
  cluster: roleConfig.cluster(),
  dataDir: roleConfig.dataDir('log, projections'),
  listen: roleConfig.listen(5002),
  log: roleConfig.log(),
  readYourWrites: roleConfig.readYourWrites(
    'how long a read with Shoal-Min-Position waits before answering 503',
  ),
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
  auth: AuthConfigSchema,
  logLevel: roleConfig.logLevel(),
  tracing: roleConfig.tracing(),
});

export type BuildIndexConfig = Static<typeof BuildIndexConfigSchema>;
