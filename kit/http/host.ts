/**
 * A host as it stands in a URL: IPv6 addresses in brackets (`[::1]`), names and IPv4 as they
 * are. For building `http://host:port` from a listening socket's address.
 */
export const formatHost = (host: string): string => (host.includes(':') ? `[${host}]` : host);
