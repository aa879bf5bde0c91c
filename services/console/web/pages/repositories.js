// Repositories (search, sizes, tag counts) and one repository: its tags, and the whole
// repository as of a time or a log position.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import {
  Digest,
  Empty,
  LiveBadge,
  Status,
  ago,
  api,
  bytes,
  historyHref,
  manifestHref,
  repoHref,
  useData,
  useLive,
  when,
} from '../lib.js';

const tagEvents = [
  'TagPushed',
  'TagDeleted',
  'ManifestPushed',
  'ManifestDeleted',
  'ManifestCollected',
];

export const Repositories = () => {
  const [query, setQuery] = useState('');
  const state = useData(() => api('repositories', { q: query, limit: 100 }), [query]);
  const connected = useLive({ type: tagEvents.join(',') }, { log: () => state.reload() });
  return html`<section>
    <div class="title">
      <h1>Repositories</h1>
      <${LiveBadge} connected=${connected} />
    </div>
    <input
      class="search"
      type="search"
      placeholder="Search repositories…"
      aria-label="Search repositories"
      value=${query}
      onInput=${(e) => setQuery(e.currentTarget.value)}
    />
    <${Status} state=${state}>
      ${(data) =>
        data.repositories.length === 0
          ? html`<${Empty}>
              ${
                query === ''
                  ? html`<p><strong>No repositories yet.</strong></p>
                      <p>
                        Push an image through the proxy, e.g.${' '}
                        <code>skopeo copy oci:./img:v1 docker://HOST/demo/app:v1</code>; it appears
                        here as soon as the log records it.
                      </p>`
                  : html`<p>No repository matches “${query}”.</p>`
              }
            <//>`
          : html`<table class="list" data-testid="repositories">
                <thead>
                  <tr>
                    <th>Repository</th>
                    <th class="num">Tags</th>
                    <th class="num">Manifests</th>
                    <th class="num">Size</th>
                    <th>Last change</th>
                  </tr>
                </thead>
                <tbody>
                  ${data.repositories.map(
                    (r) =>
                      html`<tr>
                        <td><a href=${repoHref(r.name)}>${r.name}</a></td>
                        <td class="num">${r.tags}${r.capped ? '+' : ''}</td>
                        <td class="num">${r.manifests}</td>
                        <td class="num">${bytes(r.size)}</td>
                        <td>
                          ${
                            r.lastChange === undefined
                              ? '–'
                              : html`<a href=${historyHref(r.name, r.lastChange.tag)}
                                    >${r.lastChange.tag}</a
                                  >${' '}by ${r.lastChange.actor}${' '}
                                  <span class="muted" title=${when(r.lastChange.at)}
                                    >${ago(r.lastChange.at)}</span
                                  >`
                          }
                        </td>
                      </tr>`,
                  )}
                </tbody>
              </table>
              ${data.next === undefined ? '' : html`<p class="muted">More repositories follow; refine the search.</p>`}`}
    <//>
  </section>`;
};

const TagsTable = ({ repo, tags }) =>
  html`<table class="list" data-testid="tags">
    <thead>
      <tr>
        <th>Tag</th>
        <th>Digest</th>
        <th class="num">Size</th>
        <th>Platforms</th>
        <th>Last change</th>
        <th>By</th>
      </tr>
    </thead>
    <tbody>
      ${tags.map(
        (t) =>
          html`<tr data-tag=${t.tag}>
            <td><a href=${historyHref(repo, t.tag)}>${t.tag}</a></td>
            <td>
              <a href=${manifestHref(repo, t.digest)}><${Digest} digest=${t.digest} /></a>
            </td>
            <td class="num">${bytes(t.size)}</td>
            <td>${(t.platforms ?? []).join(', ') || '–'}</td>
            <td>
              ${
                t.lastChange === undefined
                  ? '–'
                  : html`<span title=${when(t.lastChange.at)}>${ago(t.lastChange.at)}</span>${' '}
                      <span class="muted">(position ${t.lastChange.position})</span>`
              }
            </td>
            <td>${t.lastChange?.actor ?? '–'}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;

/** The repository as of a time or position: the tag → digest map then, beside now. */
const AsOf = ({ repo, initial }) => {
  const [at, setAt] = useState(initial);
  const [result, setResult] = useState(undefined);
  const show = (input) => {
    const value = input.trim();
    if (value === '') return;
    // A time without a zone is the browser's local time: sent in UTC. What does not parse is
    // sent as typed, for the console to say why.
    const time = Date.parse(value);
    const asOf = /^\d+$/.test(value) || Number.isNaN(time) ? value : new Date(time).toISOString();
    setResult({ loading: true });
    api('as-of', { repo, at: asOf }).then(
      (data) => setResult({ data }),
      (error) => setResult({ error: error.message }),
    );
  };
  // Opened from a tag's history (`?at=<position>`): show that moment at once.
  useEffect(() => show(initial), [repo, initial]);
  const submit = (e) => {
    e.preventDefault();
    show(at);
  };
  return html`<section class="card" data-testid="as-of">
    <h2>As of…</h2>
    <form class="row" onSubmit=${submit}>
      <input
        name="at"
        aria-label="as of a time or a log position"
        placeholder="a log position (e.g. 42) or a time (2026-12-07T08:00:00Z)"
        value=${at}
        onInput=${(e) => setAt(e.currentTarget.value)}
      />
      <button type="submit">Show the repository then</button>
    </form>
    ${
      result === undefined
        ? html`<p class="muted">
            See every tag of the repository as it was at a moment or a log position.
          </p>`
        : html`<${Status} state=${result}>
            ${(data) =>
              html`<p>
                  As of${' '}
                  <strong
                    >${
                      data.asOf.position !== undefined
                        ? `position ${data.asOf.position}`
                        : when(data.asOf.at ?? data.asOf.time)
                    }</strong
                  >:
                </p>
                ${
                  data.tags.length === 0
                    ? html`<${Empty}>No tag existed then.<//>`
                    : html`<table class="list" data-testid="as-of-tags">
                        <thead>
                          <tr>
                            <th>Tag</th>
                            <th>Digest then</th>
                            <th>Set</th>
                            <th>Now</th>
                          </tr>
                        </thead>
                        <tbody>
                          ${data.tags.map(
                            (t) =>
                              html`<tr data-tag=${t.tag}>
                                <td><a href=${historyHref(repo, t.tag)}>${t.tag}</a></td>
                                <td data-digest=${t.digest}><${Digest} digest=${t.digest} /></td>
                                <td>
                                  ${when(t.change?.at)}${' '}
                                  <span class="muted">(position ${t.change?.position})</span>
                                  ${` by ${t.change?.actor}`}
                                </td>
                                <td>
                                  ${
                                    t.current === t.digest
                                      ? html`<span class="muted">unchanged</span>`
                                      : t.current === undefined
                                        ? html`<span class="warn">deleted</span>`
                                        : html`<span class="warn">moved to</span>${' '}
                                            <${Digest} digest=${t.current} />`
                                  }
                                </td>
                              </tr>`,
                          )}
                        </tbody>
                      </table>`
                }
                ${
                  data.absent.length === 0
                    ? ''
                    : html`<p class="muted">Not there then: ${data.absent.join(', ')}</p>`
                }`}
          <//>`
    }
  </section>`;
};

export const Repository = ({ repo, at = '' }) => {
  const summary = useData(() => api('repository', { name: repo }), [repo]);
  const tags = useData(() => api('tags', { repo, limit: 500 }), [repo]);
  const connected = useLive(
    { type: tagEvents.join(',') },
    {
      log: (event) => {
        if (event.data?.repo === repo) {
          summary.reload();
          tags.reload();
        }
      },
    },
    [repo],
  );
  return html`<section>
    <div class="title">
      <h1><a href="#/" class="muted">Repositories /</a> ${repo}</h1>
      <${LiveBadge} connected=${connected} />
    </div>
    ${
      summary.status === 404
        ? // Unknown, or hidden by the policies: the console tells neither apart, as the registry.
          html`<div class="banner warn" role="alert" data-testid="unknown-repository">
          Repository <strong>${repo}</strong> is not known here, or your login may not pull it.
        </div>`
        : html`<${Status} state=${summary}>
            ${(s) =>
              s.tags === 0 && s.manifests === 0
                ? html`<div class="banner warn" role="alert" data-testid="unknown-repository">
                    Repository <strong>${repo}</strong> has no tags or manifests: nothing was
                    pushed to it, or everything in it was deleted.
                  </div>`
                : html`<p class="facts">
                    <span><strong>${s.tags}</strong> tags</span>
                    <span><strong>${s.manifests}</strong> manifests</span>
                    <span><strong>${bytes(s.size)}</strong> stored</span>
                  </p>`}
          <//>
          <${Status} state=${tags}>
            ${(data) =>
              data.tags.length === 0
                ? (summary.data?.manifests ?? 0) > 0
                  ? html`<${Empty}>This repository has no tags (its manifests are untagged).<//>`
                  : ''
                : html`<${TagsTable} repo=${repo} tags=${data.tags} />`}
          <//>
          <${AsOf} repo=${repo} initial=${at} />`
    }
  </section>`;
};
