import { ShoalError, isShoalError } from '../../domain';

// `--url`: the address of a running service a command talks to instead of the data directory.
// People give it `host:port`, or the address of the wrong service (the proxy's, from the
// registry they push to); both get an answer that says what the URL should be.

/** What a command's `--url` must point at, in messages. */
export type RemoteService = {
  /** The `/health` service names that serve the API: `build-index`, `replicator`. */
  readonly services: readonly string[];
  /** `a build-index (shoal dev: port P+2, "buildIndex" in <data-dir>/endpoints.json)`. */
  readonly what: string;
};

export const buildIndexService: RemoteService = {
  services: ['build-index'],
  what: 'a build-index (shoal dev: port P+2, "buildIndex" in <data-dir>/endpoints.json)',
};

export const replicationService: RemoteService = {
  services: ['build-index', 'replicator'],
  what:
    'a build-index (shoal dev: port P+2, "buildIndex" in <data-dir>/endpoints.json) or a ' +
    '`shoal replicator` (port 5005 by default)',
};

/** `http://host:port` from `--url` (`host:port` means http); refuses other schemes. */
export const serviceUrl = (text: string, service: RemoteService): string => {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ShoalError(
      'PARAMETER_INVALID',
      `--url "${text}" is not a URL: give the address of ${service.what}, e.g. ` +
        'http://127.0.0.1:5002 or 127.0.0.1:5002',
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ShoalError(
      'PARAMETER_INVALID',
      `--url "${text}": ${url.protocol.slice(0, -1)} is not http or https; give the address ` +
        `of ${service.what}`,
    );
  }
  return url.toString().replace(/\/+$/, '');
};

/** The service a URL's `/health` names (Shoal services say), if any. */
const serviceAt = async (url: string): Promise<string | undefined> => {
  try {
    const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(3000) });
    const body = (await response.json()) as { service?: unknown };
    return typeof body.service === 'string' ? body.service : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Runs `fn` against the service at `url`; when the answer shows the URL is not the service the
 * command needs (a route it lacks) or cannot be reached, the error says what it is and what the
 * URL should point at.
 */
export const callRemote = async <T>(
  url: string,
  service: RemoteService,
  fn: () => Promise<T>,
): Promise<T> => {
  try {
    return await fn();
  } catch (error) {
    if (!isShoalError(error)) throw error;
    const noRoute =
      /^no route /.test(error.message) ||
      (error.code === 'INTERNAL' && /HTTP 404$/.test(error.message));
    if (noRoute) {
      const found = await serviceAt(url);
      if (found !== undefined && service.services.includes(found)) throw error;
      throw new ShoalError(
        'PARAMETER_INVALID',
        `${url} is ${found === undefined ? 'not a Shoal service' : `Shoal's ${found}`}, which ` +
          `does not serve this command: --url takes the address of ${service.what}`,
      );
    }
    if (error.code === 'SERVICE_UNAVAILABLE' && /^cannot reach /.test(error.message)) {
      throw new ShoalError(
        'SERVICE_UNAVAILABLE',
        `${error.message}. Is it running? --url takes the address of ${service.what}`,
      );
    }
    throw error;
  }
};
