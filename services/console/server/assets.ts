import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative } from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';

const contentTypes: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** The console's web folder: beside this file in the source tree, found from dist/ too. */
export const webRoot = (): string => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'services', 'console', 'web');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
  }
  throw new Error('the console web folder (services/console/web) is missing');
};

/**
 * The front-end libraries, served from the installed packages (no build step, nothing
 * fetched from outside): Preact, its hooks, and htm (tagged templates instead of JSX).
 */
const vendorFiles = (): Record<string, string> => {
  const htmDir = dirname(dirname(require.resolve('htm')));
  return {
    'preact.mjs': require.resolve('preact'),
    'preact-hooks.mjs': require.resolve('preact/hooks'),
    'htm.mjs': join(htmDir, 'dist', 'htm.mjs'),
    'htm-preact.mjs': join(htmDir, 'preact', 'index.mjs'),
  };
};

const filesUnder = (root: string): string[] =>
  readdirSync(root).flatMap((name) => {
    const path = join(root, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });

/**
 * Serves the single-page front end: `/` is `index.html`, `/assets/…` the files of the web
 * folder and `/vendor/…` the libraries. Only files known at start are served (a fixed map,
 * so no path from a request ever reaches the file system), read into memory once.
 */
export const assetRoutes =
  (root = webRoot()): FastifyPluginAsync =>
  async (app) => {
    const files = new Map<string, { body: Buffer; type: string }>();
    const add = (url: string, path: string) =>
      files.set(url, {
        body: readFileSync(path),
        type: contentTypes[extname(path)] ?? 'application/octet-stream',
      });
    for (const path of filesUnder(root)) {
      add(`/assets/${relative(root, path).split('\\').join('/')}`, path);
    }
    for (const [name, path] of Object.entries(vendorFiles())) add(`/vendor/${name}`, path);
    const index = files.get('/assets/index.html');
    if (index === undefined) throw new Error(`${root} has no index.html`);

    app.get('/', async (_request, reply) =>
      reply.type(index.type).header('cache-control', 'no-cache').send(index.body),
    );
    app.get('/assets/*', async (request, reply) => serve(request.url, reply));
    app.get('/vendor/*', async (request, reply) => serve(request.url, reply));

    const serve = (url: string, reply: FastifyReply) => {
      const file = files.get(url.split('?')[0] as string);
      if (file === undefined) {
        return reply.code(404).type('text/plain').send('not found');
      }
      return reply.type(file.type).header('cache-control', 'no-cache').send(file.body);
    };
  };
