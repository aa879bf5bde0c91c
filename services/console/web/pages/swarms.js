// Swarms, live: what the trackers heard of each swarm (they keep it in memory, not on the
// log), pushed every second while the page is open: per-agent progress, bytes from peers
// and from origins, origin egress, completion times.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import {
  Bar,
  Digest,
  Empty,
  LiveBadge,
  Status,
  api,
  bytes,
  noEvents,
  repoHref,
  useData,
  useLive,
} from '../lib.js';

const time = (ms) => (ms === undefined ? '–' : new Date(ms).toLocaleTimeString());
const seconds = (from, to) => (to === undefined ? '' : `${((to - from) / 1000).toFixed(1)} s`);

const Peer = ({ peer, size }) => {
  const downloaded = peer.downloaded ?? 0;
  const total = size ?? downloaded + (peer.left ?? 0);
  const done = peer.complete ? total : total - (peer.left ?? total);
  return html`<tr data-peer=${peer.peerId} class=${peer.active ? '' : 'gone'}>
    <td>
      ${peer.origin ? html`<span class="pill info">origin</span>` : html`<span class="pill">agent</span>`}${' '}
      <code>${peer.address}</code>
    </td>
    <td class="progress">
      ${
        peer.origin
          ? html`<span class="muted">seeds</span>`
          : html`<${Bar}
              done=${done}
              total=${total}
              label=${peer.complete ? 'complete' : `${bytes(done)} / ${bytes(total)}`}
            />`
      }
    </td>
    <td class="num">
      ${peer.origin ? '–' : bytes(Math.max(0, downloaded - (peer.fromOrigins ?? 0)))}
    </td>
    <td class="num">${peer.origin ? '–' : bytes(peer.fromOrigins ?? 0)}</td>
    <td class="num">${bytes(peer.uploaded ?? 0)}</td>
    <td>
      ${
        peer.completedAt === undefined
          ? peer.stoppedAt === undefined
            ? '–'
            : html`<span class="muted">left ${time(peer.stoppedAt)}</span>`
          : html`${time(peer.completedAt)}${' '}
              <span class="muted" title="from its first announce">(${seconds(peer.firstSeenAt, peer.completedAt)})</span>`
      }
    </td>
  </tr>`;
};

const Swarm = ({ swarm }) => {
  const t = swarm.totals;
  const fetched = t.fromPeers + t.fromOrigins;
  return html`<article class="card swarm" data-digest=${swarm.digest}>
    <header>
      <h2><${Digest} digest=${swarm.digest} /> <span class="muted">${bytes(swarm.size)}</span></h2>
      <div class="muted">
        ${swarm.repos.slice(0, 3).map((r) => html`<a href=${repoHref(r)}>${r}</a> `)}
        ${`· ${swarm.activePeers} active · tracker ${swarm.tracker}`}
      </div>
    </header>
    <p class="facts">
      <span
        ><strong data-testid="complete-agents">${t.completeAgents}</strong> / ${t.agents} agents
        complete</span
      >
      <span><strong>${bytes(t.fromPeers)}</strong> from peers</span>
      <span><strong>${bytes(t.fromOrigins)}</strong> from origins</span>
      <span><strong>${bytes(t.originEgress)}</strong> origin egress</span>
      ${fetched > 0 ? html`<span><strong>${Math.round((t.fromPeers / fetched) * 100)}%</strong> peer share</span>` : ''}
    </p>
    <table class="list">
      <thead>
        <tr>
          <th>Peer</th>
          <th>Progress</th>
          <th class="num">From peers</th>
          <th class="num">From origins</th>
          <th class="num">Uploaded</th>
          <th>Completed</th>
        </tr>
      </thead>
      <tbody>
        ${swarm.peers.map((p) => html`<${Peer} peer=${p} size=${swarm.size} />`)}
      </tbody>
    </table>
    ${swarm.omittedPeers > 0 ? html`<p class="muted">${swarm.omittedPeers} more peers not listed.</p>` : ''}
  </article>`;
};

export const Swarms = () => {
  const initial = useData(() => api('swarms'), []);
  const [live, setLive] = useState(undefined);
  const connected = useLive({ ...noEvents, swarms: 'true' }, { swarms: (s) => setLive(s) });
  const state = live === undefined ? initial : { data: { ...initial.data, ...live } };
  return html`<section>
    <div class="title">
      <h1>Swarms</h1>
      <${LiveBadge} connected=${connected} />
    </div>
    <${Status} state=${state}>
      ${(s) => html`
        ${
          s.configured === false
            ? html`<div class="banner warn">
                No tracker is configured: swarms cannot be shown (services.trackers).
              </div>`
            : ''
        }
        ${(s.trackers ?? [])
          .filter((t) => !t.ok)
          .map(
            (t) =>
              html`<div class="banner error" role="alert">
                Tracker ${t.url} is not answering: ${t.error}
              </div>`,
          )}
        ${
          s.swarms.length === 0
            ? html`<${Empty}>
                <p><strong>No swarm is active.</strong></p>
                <p>
                  Pull an image through an agent; its layers' swarms appear here as the agents
                  announce.
                </p>
              <//>`
            : html`${s.swarms.map((swarm) => html`<${Swarm} swarm=${swarm} key=${swarm.infoHash} />`)}
                <p class="muted">
                  Progress is as each peer last announced: at once when it completes, else every
                  announce interval; uploads and origin egress catch up on the next announce.
                </p>`
        }
      `}
    <//>
  </section>`;
};
