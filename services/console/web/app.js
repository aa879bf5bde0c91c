// The console's shell: the header (cluster, viewer, log position, services' health), the
// navigation and the hash router that picks a page.
import { html, render } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api, noEvents, useLive } from './lib.js';
import { Repositories, Repository } from './pages/repositories.js';
import { History } from './pages/history.js';
import { Manifest } from './pages/manifest.js';
import { Replication } from './pages/replication.js';
import { Placement } from './pages/placement.js';
import { Swarms } from './pages/swarms.js';
import { Events } from './pages/events.js';

const routes = [
  [/^\/?$/, () => html`<${Repositories} />`],
  [
    /^\/repo\/([^/]+)$/,
    ([repo], query) => html`<${Repository} repo=${repo} at=${query.get('at') ?? ''} />`,
  ],
  [/^\/history\/([^/]+)\/([^/]+)$/, ([repo, tag]) => html`<${History} repo=${repo} tag=${tag} />`],
  [
    /^\/manifest\/([^/]+)\/([^/]+)$/,
    ([repo, digest]) => html`<${Manifest} repo=${repo} digest=${digest} />`,
  ],
  [/^\/replication$/, () => html`<${Replication} />`],
  [/^\/placement$/, () => html`<${Placement} />`],
  [/^\/swarms$/, () => html`<${Swarms} />`],
  [/^\/events$/, () => html`<${Events} />`],
];

const nav = [
  ['#/', 'Repositories', (p) => p === '/' || p === '' || /^\/(repo|history|manifest)\//.test(p)],
  ['#/replication', 'Replication', (p) => p === '/replication'],
  ['#/placement', 'Origins & placement', (p) => p === '/placement'],
  ['#/swarms', 'Swarms', (p) => p === '/swarms'],
  ['#/events', 'Event log', (p) => p === '/events'],
];

const currentPath = () => location.hash.replace(/^#/, '') || '/';

const useHashPath = () => {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const onChange = () => setPath(currentPath());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return path;
};

/** Services that are down, as banners: what it means for the pages, in words. */
const consequences = {
  'build-index': 'tags cannot be pushed or moved while it is down; the pages show the log as read.',
  proxy: 'manifest contents (config, layers, platforms) cannot be shown.',
  tracker: 'live swarms cannot be shown.',
  replicator: 'replication status comes from the log only.',
  origin: 'blobs it holds may be slower to pull.',
  agent: 'pulls through it fail.',
};

const HealthBanners = ({ services }) => {
  const down = services.filter((s) => !s.ok);
  if (down.length === 0) return null;
  return html`<div class="banners">
    ${down.map(
      (s) =>
        html`<div class="banner error" role="alert" data-testid="service-down">
          <strong>${s.name} is not answering</strong>${' '}(${s.url}, since${' '}
          ${new Date(s.since).toLocaleTimeString()}):${' '}${consequences[s.role] ?? ''}
          <small>${s.reason ?? ''}</small>
        </div>`,
    )}
  </div>`;
};

const Header = ({ path }) => {
  const [overview, setOverview] = useState(undefined);
  const [error, setError] = useState(undefined);
  const [position, setPosition] = useState(undefined);
  const [services, setServices] = useState([]);
  useEffect(() => {
    api('overview').then(
      (o) => {
        setOverview(o);
        setServices(o.services);
        setError(undefined);
      },
      (e) => setError(e.message),
    );
  }, []);
  const connected = useLive(noEvents, {
    position: (p) => p.position !== undefined && setPosition(p.position),
    health: (h) => setServices(h.services),
  });
  const head = position ?? overview?.applied;
  return html`<header>
    <div class="top">
      <a class="brand" href="#/">Shoal <span>console</span></a>
      <nav>
        ${nav.map(
          ([href, label, active]) =>
            html`<a href=${href} class=${active(path) ? 'active' : ''}>${label}</a>`,
        )}
      </nav>
      <div class="meta">
        ${
          overview === undefined
            ? ''
            : html`<span title="cluster">cluster <strong>${overview.cluster}</strong></span>
                <span title="who you are to the console"
                  >viewer <strong>${overview.viewer.actor}</strong></span
                >`
        }
        <span title="log position the console has applied" data-testid="position"
          >log @ <strong>${head ?? '…'}</strong></span
        >
        <span class=${`live ${connected ? 'on' : 'off'}`}
          >${connected ? 'live' : 'reconnecting…'}</span
        >
      </div>
    </div>
    ${
      error === undefined
        ? ''
        : html`<div class="banner error" role="alert">
            The console's API is not answering: ${error}
          </div>`
    }
    <${HealthBanners} services=${services} />
  </header>`;
};

const App = () => {
  const path = useHashPath();
  let page = html`<div class="banner error">
    No page at ${path}. <a href="#/">Repositories</a>
  </div>`;
  const [route, search = ''] = path.split('?');
  for (const [pattern, make] of routes) {
    const match = pattern.exec(route);
    if (match !== null) {
      page = make(match.slice(1).map(decodeURIComponent), new URLSearchParams(search));
      break;
    }
  }
  return html`<${Header} path=${path} />
    <main key=${path}>${page}</main>`;
};

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
