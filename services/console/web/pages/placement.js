// Origins and placement: the ring (from the log), each blob's holders and owners, and the
// write-back state; filters for blobs awaiting write-back or missing on an owner.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import {
  Digest,
  Empty,
  LiveBadge,
  Status,
  api,
  bytes,
  repoHref,
  useData,
  useLive,
} from '../lib.js';

export const Placement = () => {
  const [only, setOnly] = useState('');
  const [prefix, setPrefix] = useState('');
  const ring = useData(() => api('ring'), []);
  const blobs = useData(
    () =>
      api('blobs', {
        only,
        prefix: prefix === '' ? '' : `sha256:${prefix.replace(/^sha256:/, '')}`,
        limit: 200,
      }),
    [only, prefix],
  );
  const connected = useLive(
    {
      type: 'BlobUploaded,BlobPlaced,BlobPersisted,BlobDeleted,BlobCollected,BlobErased,OriginJoined,OriginLeft',
    },
    {
      log: (event) => {
        if (event.type.startsWith('Origin')) ring.reload();
        blobs.reload();
      },
    },
  );
  return html`<section>
    <div class="title">
      <h1>Origins and placement</h1>
      <${LiveBadge} connected=${connected} />
    </div>
    <h2>The ring</h2>
    <${Status} state=${ring}>
      ${(r) =>
        r.members.length === 0
          ? html`<${Empty}>No origin has joined the ring yet.<//>`
          : html`<p class="muted">
                ${
                  `Each blob is owned by ${Math.min(r.replicas, r.members.length)} of the ` +
                  `${r.members.length} origin${r.members.length === 1 ? '' : 's'} ` +
                  `(rendezvous hashing, ${r.replicas} replicas).`
                }
              </p>
              <ul class="ring" data-testid="ring">
                ${r.members.map(
                  (m) =>
                    html`<li>
                      <strong>origin ${m.id}</strong> <code>${m.address}</code>${' '}
                      <span class="muted">joined at position ${m.position}</span>
                    </li>`,
                )}
              </ul>`}
    <//>
    <h2>Blobs</h2>
    <div class="row">
      <input
        type="search"
        placeholder="digest prefix…"
        aria-label="digest prefix"
        value=${prefix}
        onInput=${(e) => setPrefix(e.currentTarget.value.trim())}
      />
      <select
        aria-label="which blobs"
        value=${only}
        onChange=${(e) => setOnly(e.currentTarget.value)}
      >
        <option value="">all blobs</option>
        <option value="pending">awaiting write-back</option>
        <option value="under-placed">missing on an owner</option>
      </select>
    </div>
    <${Status} state=${blobs}>
      ${(b) =>
        html`<p class="facts">
            <span><strong>${b.counts.scanned}</strong> scanned</span>
            <span
              ><strong class=${b.counts.pendingWriteBack > 0 ? 'warn' : ''}
                >${b.counts.pendingWriteBack}</strong
              >${' awaiting write-back'}</span
            >
            <span
              ><strong class=${b.counts.underPlaced > 0 ? 'warn' : ''}
                >${b.counts.underPlaced}</strong
              >${' missing on an owner'}</span
            >
          </p>
          ${
            b.blobs.length === 0
              ? html`<${Empty}>No blob ${only === '' ? 'is stored yet' : 'matches'}.<//>`
              : html`<table class="list" data-testid="blobs">
                  <thead>
                    <tr>
                      <th>Blob</th>
                      <th class="num">Size</th>
                      <th>Repositories</th>
                      <th>Held by</th>
                      <th>Owners</th>
                      <th>Write-back</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${b.blobs.map(
                      (x) =>
                        html`<tr>
                          <td><${Digest} digest=${x.digest} /></td>
                          <td class="num">${bytes(x.size)}</td>
                          <td>
                            ${x.repos.slice(0, 3).map((r) => html`<a href=${repoHref(r)}>${r}</a> `)}${x.repos.length > 3 ? `+${x.repos.length - 3}` : ''}
                          </td>
                          <td>
                            ${x.origins.map((o) => `origin ${o}`).join(', ') || html`<span class="warn">none</span>`}
                          </td>
                          <td>
                            ${x.owners.map((o) => html`<span class=${x.missingOwners.includes(o) ? 'warn' : ''} title=${x.missingOwners.includes(o) ? 'owner without a copy yet' : 'owner'}>origin ${o}${' '}</span>`)}
                          </td>
                          <td>
                            ${
                              x.backends.length > 0
                                ? html`<span class="pill ok">${x.backends.join(', ')}</span>`
                                : html`<span class="pill warn">pending</span>`
                            }
                          </td>
                        </tr>`,
                    )}
                  </tbody>
                </table>`
          }`}
    <//>
  </section>`;
};
