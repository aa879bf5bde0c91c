import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sha256 } from '../fixtures/blobs';

/**
 * A small OCI registry in memory for replication tests: blobs (monolithic and chunked
 * uploads, mounts), manifests by tag and digest, tag lists, and the behaviours the replicator
 * must cope with — authentication challenges (basic, bearer with a token endpoint), a switch
 * that makes every request fail with 503, per-tag failures, and a registry that cannot
 * delete tags (400, as the CNCF registry). It records the requests it served.
 */
export type FakeRegistry = {
  readonly url: string;
  readonly host: string;
  readonly blobs: Map<string, Buffer>;
  readonly manifests: Map<string, { bytes: Buffer; mediaType: string }>;
  /** `repo:tag` → digest. */
  readonly tags: Map<string, string>;
  /** `METHOD path` of every request, in order. */
  readonly requests: string[];
  /** Scopes asked of the token endpoint. */
  readonly tokenScopes: string[];
  down: boolean;
  /** Tags whose manifest PUT fails with 400 MANIFEST_INVALID. */
  readonly rejectTags: Set<string>;
  /** Makes the next bearer token expire at once (the next request is challenged again). */
  expireTokens(): void;
  close(): Promise<void>;
};

export type FakeRegistryOptions = {
  readonly auth?: 'basic' | 'bearer';
  readonly username?: string;
  readonly password?: string;
  /** Delete by tag answers 400 UNSUPPORTED (the CNCF registry's behaviour). */
  readonly noTagDelete?: boolean;
  /** Upload sessions' `Location`s point at this base URL (another host) instead. */
  readonly uploadsAt?: string;
  /** The bearer challenge's token realm (default: this registry's `/token`). */
  readonly realm?: string;
  /** Tag lists answer with a `Link` to a next page at this URL (another host). */
  readonly nextPageAt?: string;
  /**
   * Serves the referrers API (OCI distribution 1.1): `GET …/referrers/<digest>` lists the
   * manifests with that subject, and a manifest PUT with a subject answers `OCI-Subject`.
   * Without it those paths answer 404, as the CNCF registry 2.8 does.
   */
  readonly referrersApi?: boolean;
};

/** The `subject` digest a manifest names, if any. */
const subjectOf = (bytes: Buffer): string | undefined => {
  try {
    return (JSON.parse(bytes.toString('utf8')) as { subject?: { digest?: string } }).subject
      ?.digest;
  } catch {
    return undefined;
  }
};

const readBody = async (request: IncomingMessage): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
};

export const startFakeRegistry = async (
  options: FakeRegistryOptions = {},
): Promise<FakeRegistry> => {
  const blobs = new Map<string, Buffer>();
  const links = new Set<string>();
  const manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  const tags = new Map<string, string>();
  const uploads = new Map<string, { repo: string; data: Buffer }>();
  const requests: string[] = [];
  const tokenScopes: string[] = [];
  const validTokens = new Set<string>();
  const user = options.username ?? 'user';
  const password = options.password ?? 'secret';
  const basic = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  let url = '';

  const error = (response: ServerResponse, status: number, code: string, message = code) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ errors: [{ code, message }] }));
  };

  const authorized = (request: IncomingMessage, response: ServerResponse): boolean => {
    const header = request.headers.authorization;
    if (options.auth === 'basic') {
      if (header === basic) return true;
      response.setHeader('www-authenticate', 'Basic realm="fake"');
      error(response, 401, 'UNAUTHORIZED');
      return false;
    }
    if (options.auth === 'bearer') {
      if (header?.startsWith('Bearer ') && validTokens.has(header.slice(7))) return true;
      response.setHeader(
        'www-authenticate',
        `Bearer realm="${options.realm ?? `${url}/token`}",service="fake",scope="registry:catalog:*"`,
      );
      error(response, 401, 'UNAUTHORIZED');
      return false;
    }
    return true;
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const target = new URL(request.url ?? '/', url);
    const path = target.pathname;
    const method = request.method ?? 'GET';
    requests.push(`${method} ${path}`);
    if (path === '/token') {
      if (request.headers.authorization !== basic) return error(response, 401, 'UNAUTHORIZED');
      tokenScopes.push(...target.searchParams.getAll('scope'));
      const token = randomUUID();
      validTokens.add(token);
      response.writeHead(200, { 'content-type': 'application/json' });
      return response.end(JSON.stringify({ token, expires_in: 300 }));
    }
    if (fake.down) {
      request.resume();
      return error(response, 503, 'UNAVAILABLE');
    }
    if (!authorized(request, response)) {
      request.resume();
      return;
    }
    if (path === '/v2/' && method === 'GET') {
      response.writeHead(200, { 'content-type': 'application/json' });
      return response.end('{}');
    }
    const upload = /^\/upload\/([\w-]+)$/.exec(path);
    if (upload !== null) {
      const session = uploads.get(upload[1] as string);
      if (session === undefined) return error(response, 404, 'BLOB_UPLOAD_UNKNOWN');
      const body = await readBody(request);
      if (method === 'PATCH') {
        const range = /^(\d+)-(\d+)$/.exec(request.headers['content-range'] ?? '');
        if (range !== null && Number(range[1]) !== session.data.length) {
          return error(response, 416, 'RANGE_INVALID');
        }
        session.data = Buffer.concat([session.data, body]);
        response.writeHead(202, {
          location: `/upload/${upload[1]}`,
          range: `0-${session.data.length - 1}`,
        });
        return response.end();
      }
      if (method === 'PUT') {
        const data = Buffer.concat([session.data, body]);
        const digest = target.searchParams.get('digest') ?? '';
        uploads.delete(upload[1] as string);
        if (sha256(data) !== digest) return error(response, 400, 'DIGEST_INVALID');
        blobs.set(digest, data);
        links.add(`${session.repo}@${digest}`);
        response.writeHead(201, { 'docker-content-digest': digest });
        return response.end();
      }
      if (method === 'DELETE') {
        uploads.delete(upload[1] as string);
        response.writeHead(204);
        return response.end();
      }
    }
    const referrers = /^\/v2\/(.+)\/referrers\/(sha256:[0-9a-f]{64})$/.exec(path);
    if (referrers !== null && options.referrersApi && method === 'GET') {
      const [, repo, subject] = referrers as unknown as [string, string, string];
      const listed = [...manifests]
        .filter(([key, m]) => key.startsWith(`${repo}@`) && subjectOf(m.bytes) === subject)
        .map(([key, m]) => ({
          mediaType: m.mediaType,
          digest: key.slice(repo.length + 1),
          size: m.bytes.length,
        }));
      response.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' });
      return response.end(JSON.stringify({ schemaVersion: 2, manifests: listed }));
    }
    const m = /^\/v2\/(.+)\/(blobs\/uploads|blobs|manifests|tags)\/(.*)$/.exec(path);
    if (m === null) return error(response, 404, 'NOT_FOUND');
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === 'blobs/uploads' && method === 'POST') {
      await readBody(request);
      const mount = target.searchParams.get('mount');
      const from = target.searchParams.get('from');
      if (mount && from && links.has(`${from}@${mount}`)) {
        links.add(`${repo}@${mount}`);
        response.writeHead(201, { location: `/v2/${repo}/blobs/${mount}` });
        return response.end();
      }
      const id = randomUUID();
      uploads.set(id, { repo, data: Buffer.alloc(0) });
      response.writeHead(202, { location: `${options.uploadsAt ?? url}/upload/${id}` });
      return response.end();
    }
    if (kind === 'blobs' && (method === 'HEAD' || method === 'GET')) {
      const blob = blobs.get(ref);
      if (blob === undefined || !links.has(`${repo}@${ref}`)) {
        return error(response, 404, 'BLOB_UNKNOWN');
      }
      response.writeHead(200, { 'content-length': String(blob.length) });
      return response.end(method === 'GET' ? blob : undefined);
    }
    if (kind === 'tags' && ref === 'list') {
      const list = [...tags.keys()]
        .filter((k) => k.startsWith(`${repo}:`))
        .map((k) => k.slice(repo.length + 1))
        .sort();
      response.writeHead(200, {
        'content-type': 'application/json',
        ...(options.nextPageAt !== undefined && {
          link: `<${options.nextPageAt}/v2/${repo}/tags/list?n=1000&last=z>; rel="next"`,
        }),
      });
      return response.end(JSON.stringify({ name: repo, tags: list }));
    }
    if (kind === 'manifests') {
      const isDigest = ref.includes(':');
      const digestOf = () => (isDigest ? ref : tags.get(`${repo}:${ref}`));
      if (method === 'PUT') {
        const bytes = await readBody(request);
        if (!isDigest && fake.rejectTags.has(ref)) {
          return error(response, 400, 'MANIFEST_INVALID', `tag ${ref} refused`);
        }
        const digest = sha256(bytes);
        manifests.set(`${repo}@${digest}`, {
          bytes,
          mediaType: request.headers['content-type'] ?? '',
        });
        if (!isDigest) tags.set(`${repo}:${ref}`, digest);
        const subject = options.referrersApi ? subjectOf(bytes) : undefined;
        response.writeHead(201, {
          'docker-content-digest': digest,
          ...(subject !== undefined && { 'oci-subject': subject }),
        });
        return response.end();
      }
      if (method === 'HEAD' || method === 'GET') {
        const digest = digestOf();
        const found = digest === undefined ? undefined : manifests.get(`${repo}@${digest}`);
        if (found === undefined) return error(response, 404, 'MANIFEST_UNKNOWN');
        response.writeHead(200, {
          'content-type': found.mediaType,
          'docker-content-digest': digest as string,
          'content-length': String(found.bytes.length),
        });
        return response.end(method === 'GET' ? found.bytes : undefined);
      }
      if (method === 'DELETE') {
        if (!isDigest && options.noTagDelete) {
          return error(response, 400, 'DIGEST_INVALID', 'provided digest did not match');
        }
        const digest = digestOf();
        if (digest === undefined || !manifests.has(`${repo}@${digest}`)) {
          return error(response, 404, 'MANIFEST_UNKNOWN');
        }
        if (isDigest) {
          manifests.delete(`${repo}@${digest}`);
          for (const [k, v] of tags) if (k.startsWith(`${repo}:`) && v === digest) tags.delete(k);
        } else tags.delete(`${repo}:${ref}`);
        response.writeHead(202);
        return response.end();
      }
    }
    return error(response, 405, 'UNSUPPORTED');
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((e: unknown) => error(response, 500, 'INTERNAL', String(e)));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const port = (server.address() as AddressInfo).port;
  url = `http://127.0.0.1:${port}`;
  const fake: FakeRegistry = {
    url,
    host: `127.0.0.1:${port}`,
    blobs,
    manifests,
    tags,
    requests,
    tokenScopes,
    down: false,
    rejectTags: new Set(),
    expireTokens: () => validTokens.clear(),
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
  return fake;
};
