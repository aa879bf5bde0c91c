import { Type } from '@sinclair/typebox';
import { LogConfigSchema, LogLevelSchema } from './logConfig';
import {
  AdminConfigSchema,
  HttpLimitsSchema,
  SecurityConfigSchema,
  TlsConfigSchema,
} from './security/securityConfig';
import { TracingConfigSchema } from './tracing';

// The blocks every role's config repeats, defined once. Each role's config.ts composes the
// ones it has, in the order its `--help` lists them; the YAML keys (and so the `SHOAL_*`
// environment variables, derived from the paths) and the defaults are the same in every
// role. What differs by role is a parameter: the listen port, what the data directory holds.

/** `cluster`: the cluster name stamped on every event a role writes. */
const cluster = () =>
  Type.String({ default: 'default', minLength: 1, description: 'cluster name stamped on events' });

/** `dataDir`: the data directory; `holds` says what this role keeps there. */
const dataDir = (holds: string) =>
  Type.String({ default: './.shoal', description: `data directory (${holds})` });

/** `listen`: where the role's HTTP server listens. */
const listen = (port: number, options: { hostDescription?: string } = {}) =>
  Type.Object(
    {
      host: Type.String({
        default: '127.0.0.1',
        ...(options.hostDescription !== undefined && { description: options.hostDescription }),
      }),
      port: Type.Integer({ default: port, minimum: 0, maximum: 65535 }),
    },
    { default: {} },
  );

/** `readYourWrites`: how long a read waits for the projections to reach a position. */
const readYourWrites = (
  description = 'how long a request waits for the projections to reach a position',
) =>
  Type.Object(
    { timeoutMs: Type.Integer({ default: 5000, minimum: 0, description }) },
    { default: {} },
  );

/** `log`: which event log the role reads and writes (roles on the log only). */
const log = () => LogConfigSchema;

/** `logLevel`: the level of the role's own (pino) logs. */
const logLevel = () => LogLevelSchema;

/** `tls`: the certificate of the role's listener and how it asks for client certificates. */
const tls = () => TlsConfigSchema;

/** `security`: `mode` (required | open) and the identity the role presents to the others. */
const security = () => SecurityConfigSchema;

/** `http`: the listener's timeouts and connection caps. */
const http = () => HttpLimitsSchema;

/** `admin`: an optional listener of its own for /metrics and the detailed /health. */
const admin = () => AdminConfigSchema;

/** `tracing`: OpenTelemetry traces by OTLP, off by default (see `services/shared/tracing.ts`). */
const tracing = () => TracingConfigSchema;

/**
 * The fragment: a builder per block, e.g. `listen: roleConfig.listen(5000)` in the proxy's
 * schema.
 */
export const roleConfig = {
  cluster,
  dataDir,
  listen,
  readYourWrites,
  log,
  logLevel,
  tls,
  security,
  http,
  admin,
  tracing,
} as const;
