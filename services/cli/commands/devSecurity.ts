import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { validateConfig } from '../../shared/config';
import type { Logger } from '../../shared/logger';
import { roleConfig } from '../../shared/roleConfig';
import type { ClusterCertificates } from '../../shared/security/clusterCa';
import { initClusterCertificates } from '../../shared/security/clusterCa';
import type { RoleSecurity } from '../../shared/security/roleSecurity';
import { createRoleSecurity } from '../../shared/security/roleSecurity';
import type { ServiceRole } from '../../shared/security/subject';

// `shoal dev --secure`: the dev cluster as production runs it — every listener on TLS with a
// cluster CA made under the data directory, internal APIs taking cluster identities only.

const devRoles = ['proxy', 'build-index', 'origin', 'tracker', 'agent', 'cli'] as const;

const SecurityBlocks = Type.Object({
  tls: roleConfig.tls(),
  security: roleConfig.security(),
  http: roleConfig.http(),
  admin: roleConfig.admin(),
});

export type DevSecurity = {
  readonly certs: ClusterCertificates;
  /** A directory holding only the CA as `ca.crt`: skopeo's `--cert-dir`, docker's certs.d. */
  readonly clientCertDir: string;
  /** The security of one in-process role; closed with `close`. */
  readonly of: (role: ServiceRole) => RoleSecurity;
  /** What a child `shoal agent` writes in its YAML to be the same. */
  readonly agentConfig: () => Record<string, unknown>;
  readonly close: () => void;
};

/**
 * Makes (or reuses) the dev cluster's certificates in `<dataDir>/certs`: a CA, the
 * service-token key and one certificate per role for `host` and loopback.
 */
export const createDevSecurity = (dataDir: string, host: string, logger: Logger): DevSecurity => {
  const dir = join(dataDir, 'certs');
  const certs = initClusterCertificates({ dir, roles: devRoles, hosts: [host] });
  const clientCertDir = join(dir, 'client');
  mkdirSync(clientCertDir, { recursive: true });
  copyFileSync(certs.caFile, join(clientCertDir, 'ca.crt'));
  const blocksOf = (role: string) => {
    const files = certs.roles[role] as { certFile: string; keyFile: string };
    return {
      tls: { ...files, clientCaFile: certs.caFile, clientAuth: 'request' as const },
      security: { mode: 'required' as const, serviceKeyFile: certs.serviceKeyFile },
    };
  };
  const opened: RoleSecurity[] = [];
  return {
    certs,
    clientCertDir,
    of: (role) => {
      const security = createRoleSecurity(
        validateConfig(SecurityBlocks, blocksOf(role)),
        { role, name: 'dev' },
        logger.child({ role }),
      );
      opened.push(security);
      return security;
    },
    agentConfig: () => blocksOf('agent'),
    close: () => {
      for (const security of opened.splice(0)) security.close();
    },
  };
};
