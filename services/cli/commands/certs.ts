import type { Command } from 'commander';
import { defaultRoles, initClusterCertificates } from '../../shared/security/clusterCa';
import { print, printJson } from '../output';

const list = (text: string) =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);

export const registerCertsCommands = (program: Command): void => {
  const certs = program
    .command('certs')
    .description('certificates of a cluster: its CA and one certificate per role');

  certs
    .command('init')
    .argument('<dir>', 'where the files go (created; keys are written 0600)')
    .description(
      'write a cluster CA (ca.crt, ca.key), the service-token key (service-token.key) and a ' +
        'certificate and key per role (<role>.crt/.key, <role>-<name>.crt for role/name); ' +
        'files that exist are kept unless --renew',
    )
    .option(
      '--roles <list>',
      `roles to issue for, comma-separated, each "role" or "role/name" (default: ${defaultRoles.join(',')})`,
      list,
    )
    .option(
      '--hosts <list>',
      'DNS names and IP addresses the certificates are valid for, besides localhost, ' +
        '127.0.0.1 and ::1',
      list,
    )
    .option('--cluster <name>', 'cluster name in the CA certificate', 'default')
    .option('--days <n>', 'validity of role certificates in days', (v) => Number(v), 365)
    .option('--renew', 'issue the role certificates again (new keys and serials, same CA)')
    .option('--json', 'print the files as JSON')
    .action(
      (
        dir: string,
        options: {
          roles?: string[];
          hosts?: string[];
          cluster: string;
          days: number;
          renew?: boolean;
          json?: boolean;
        },
      ) => {
        const written = initClusterCertificates({
          dir,
          cluster: options.cluster,
          days: options.days,
          ...(options.roles !== undefined && { roles: options.roles }),
          ...(options.hosts !== undefined && { hosts: options.hosts }),
          ...(options.renew === true && { renew: true }),
        });
        if (options.json === true) {
          printJson(written);
          return;
        }
        print(`CA           ${written.caFile}`);
        print(`service key  ${written.serviceKeyFile}`);
        for (const [role, files] of Object.entries(written.roles)) {
          print(`${role.padEnd(12)} ${files.certFile} ${files.keyFile}`);
        }
      },
    );
};
