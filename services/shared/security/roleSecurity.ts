import { ShoalError } from '../../../domain';
import type { AdminListener } from '../http';
import type { HttpServerSetup, ServerTls } from '../httpServer';
import type { Logger } from '../logger';
import type { Authenticator, SecurityMode } from './authenticate';
import type { ClientIdentity } from './clientIdentity';
import type { AdminConfig, HttpLimits, SecurityConfig, TlsConfig } from './securityConfig';
import type { ServiceTokens } from './serviceIdentity';
import {
  createServiceTokens,
  mtlsAuthenticator,
  readServiceKey,
  serviceTokenAuthenticator,
} from './serviceIdentity';
import type { ServiceRole } from './subject';
import type { ReloadableTls } from './tlsFiles';
import { watchTlsFiles } from './tlsFiles';

/**
 * Everything about access a role is started with, built from its config by the composition
 * root: how its listener is set up (TLS, limits, the admin listener), who its requests are
 * from (the authenticators of cluster identities; user authenticators are added after), how
 * strict its internal APIs are, and the identity it presents when it calls other roles.
 * A role started without one (tests) is open, on plain HTTP with Node's limits.
 */
export type RoleSecurity = {
  readonly mode: SecurityMode;
  readonly server: HttpServerSetup;
  readonly admin?: AdminListener;
  readonly authenticators: readonly Authenticator[];
  readonly identity: ClientIdentity;
  /** Service tokens of the cluster (when it has a service key). */
  readonly tokens?: ServiceTokens;
  /** Reads every TLS file again now (SIGHUP). */
  readonly reload: () => void;
  /** Stops watching files. */
  readonly close: () => void;
};

/** A role's config blocks about access (every role has them; see roleConfig). */
export type RoleSecurityConfig = {
  readonly tls: TlsConfig;
  readonly security: SecurityConfig;
  readonly http: HttpLimits;
  readonly admin: AdminConfig;
};

/** Open access, plain HTTP: what a role has when it is started without a `RoleSecurity`. */
export const openSecurity: RoleSecurity = {
  mode: 'open',
  server: {},
  authenticators: [],
  identity: {},
  reload: () => undefined,
  close: () => undefined,
};

/**
 * Builds a role's security from its config, reading (and then watching) every file: a file
 * that does not load, or `mode: required` without any way to tell services apart (no client
 * CA and no service key) or to prove this role to others, fails here, before the role starts.
 */
export const createRoleSecurity = (
  config: RoleSecurityConfig,
  self: { role: ServiceRole; name: string },
  logger: Logger,
): RoleSecurity => {
  const { tls, security } = config;
  const watched: ReloadableTls[] = [];
  const watch = (files: Parameters<typeof watchTlsFiles>[0]) => {
    const reloadable = watchTlsFiles(files, { logger: logger.child({ module: 'tls' }) });
    watched.push(reloadable);
    return reloadable;
  };
  const close = () => {
    for (const files of watched) files.close();
  };
  try {
    const serverTls = (fragment: TlsConfig): ServerTls | undefined =>
      fragment.certFile === ''
        ? undefined
        : {
            files: watch({
              certFile: fragment.certFile,
              keyFile: fragment.keyFile,
              caFile: fragment.clientCaFile,
            }),
            clientAuth: fragment.clientCaFile === '' ? 'none' : fragment.clientAuth,
          };
    const main = serverTls(tls);
    const server: HttpServerSetup = { limits: config.http, ...(main && { tls: main }) };
    const adminTls = config.admin.enabled ? serverTls(config.admin.tls) : undefined;
    const admin: AdminListener | undefined = config.admin.enabled
      ? {
          host: config.admin.host,
          port: config.admin.port,
          server: { limits: config.http, ...(adminTls && { tls: adminTls }) },
        }
      : undefined;

    const tokens =
      security.serviceKeyFile === ''
        ? undefined
        : createServiceTokens({
            key: readServiceKey(security.serviceKeyFile),
            self,
            ttlSeconds: security.serviceTokenTtlSeconds,
          });
    const mtls = main !== undefined && main.clientAuth !== 'none';
    const authenticators: Authenticator[] = [
      ...(mtls ? [mtlsAuthenticator()] : []),
      ...(tokens !== undefined ? [serviceTokenAuthenticator(tokens)] : []),
    ];

    const clientFiles = {
      caFile: security.caFile || tls.clientCaFile,
      certFile: security.certFile || tls.certFile,
      keyFile: security.keyFile || tls.keyFile,
    };
    const client =
      clientFiles.caFile === '' && clientFiles.certFile === '' ? undefined : watch(clientFiles);
    const identity: ClientIdentity = {
      ...(client !== undefined && { tls: client.current }),
      ...(tokens !== undefined && {
        headers: async () => ({ authorization: `Bearer ${await tokens.token()}` }),
      }),
    };

    if (security.mode === 'required') {
      if (authenticators.length === 0) {
        throw new ShoalError(
          'CONFIG_INVALID',
          `${self.role}: security.mode is required, but nothing tells services apart: set ` +
            'tls.certFile with tls.clientCaFile (mTLS) or security.serviceKeyFile ' +
            '(service tokens), or security.mode: open (`shoal certs init` writes them)',
        );
      }
      if (clientFiles.certFile === '' && tokens === undefined) {
        throw new ShoalError(
          'CONFIG_INVALID',
          `${self.role}: security.mode is required, but this role has no identity to call ` +
            'the others with: a certificate (security.certFile or tls.certFile) or ' +
            'security.serviceKeyFile',
        );
      }
    }
    return {
      mode: security.mode,
      server,
      ...(admin && { admin }),
      authenticators,
      identity,
      ...(tokens && { tokens }),
      reload: () => {
        for (const files of watched) files.reload();
      },
      close,
    };
  } catch (error) {
    close();
    throw error;
  }
};
