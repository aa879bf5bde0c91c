import { hostname } from 'node:os';
import type { Command } from 'commander';
import { Option } from 'commander';
import type { ClientIdentity } from '../../shared/security/clientIdentity';
import { createServiceTokens, readServiceKey } from '../../shared/security/serviceIdentity';
import { readTlsFiles } from '../../shared/security/tlsFiles';

export type ClientIdentityOptions = {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  serviceKey?: string;
};

/**
 * What a command that calls a running service (`--url`) presents: the CA the service is
 * checked against, and a cluster identity — a client certificate (e.g. the `cli` one
 * `shoal certs init` writes) or the cluster's service key (tokens as `cli/<host>`).
 */
export const addClientIdentityOptions = (command: Command): Command =>
  command
    .addOption(
      new Option('--ca-file <pem>', 'CA bundle an https service is checked against').env(
        'SHOAL_CA_FILE',
      ),
    )
    .addOption(
      new Option('--cert-file <pem>', 'client certificate: a cluster identity (cli.crt)').env(
        'SHOAL_CERT_FILE',
      ),
    )
    .addOption(new Option('--key-file <pem>', 'its key').env('SHOAL_KEY_FILE'))
    .addOption(
      new Option(
        '--service-key <pem>',
        "the cluster's service-token key: call as service cli/<host name>",
      ).env('SHOAL_SERVICE_KEY_FILE'),
    );

/** The identity the options name (files are read now: a bad one fails the command). */
export const clientIdentityOf = (given: ClientIdentityOptions): ClientIdentity => {
  // An empty value (SHOAL_SERVICE_KEY_FILE=) is no value.
  const options = Object.fromEntries(
    Object.entries(given).filter(([, value]) => value !== ''),
  ) as ClientIdentityOptions;
  const material =
    options.caFile === undefined && options.certFile === undefined
      ? undefined
      : readTlsFiles({
          ...(options.caFile !== undefined && { caFile: options.caFile }),
          ...(options.certFile !== undefined && { certFile: options.certFile }),
          ...(options.keyFile !== undefined && { keyFile: options.keyFile }),
        });
  const tokens =
    options.serviceKey === undefined
      ? undefined
      : createServiceTokens({
          key: readServiceKey(options.serviceKey),
          self: { role: 'cli', name: hostname() },
          ttlSeconds: 300,
        });
  return {
    ...(material !== undefined && { tls: () => material }),
    ...(tokens !== undefined && {
      headers: async () => ({ authorization: `Bearer ${await tokens.token()}` }),
    }),
  };
};
