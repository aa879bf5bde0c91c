import type { ClientTlsMaterial } from '../../../kit/http/transport';

/**
 * What a Shoal process presents when it calls another: its client certificate and the CA it
 * trusts (asked at each new connection, so rotated files are used from then on), and headers
 * for each request (a service token). Empty: it calls as anyone would.
 */
export type ClientIdentity = {
  readonly tls?: () => ClientTlsMaterial;
  readonly headers?: () => Promise<Readonly<Record<string, string>>>;
};

/** The headers of a request: the identity's, under the caller's own (which win). */
export const withIdentityHeaders = async (
  identity: ClientIdentity | undefined,
  headers: Readonly<Record<string, string | number | undefined>> | undefined,
): Promise<Readonly<Record<string, string | number | undefined>> | undefined> => {
  if (identity?.headers === undefined) return headers;
  return { ...(await identity.headers()), ...headers };
};
