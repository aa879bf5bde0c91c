// A tag's history: every change (digest, actor, time, position, cluster), newest first,
// gaining new changes live; each change links to the whole repository as of that change.
import { html } from 'htm/preact';
import {
  Digest,
  LiveBadge,
  Status,
  ago,
  asOfHref,
  api,
  manifestHref,
  repoHref,
  useData,
  useLive,
  when,
} from '../lib.js';

export const History = ({ repo, tag }) => {
  const state = useData(() => api('history', { repo, tag }), [repo, tag]);
  const connected = useLive(
    { type: 'TagPushed,TagDeleted' },
    { log: (event) => event.data?.repo === repo && event.data?.tag === tag && state.reload() },
    [repo, tag],
  );
  return html`<section>
    <div class="title">
      <h1>
        <a href="#/" class="muted">Repositories /</a>${' '}
        <a href=${repoHref(repo)} class="muted">${repo} /</a>${' '}${tag}
      </h1>
      <${LiveBadge} connected=${connected} />
    </div>
    <${Status} state=${state}>
      ${(data) =>
        html`<p class="muted">
            ${data.changes.length} change${data.changes.length === 1 ? '' : 's'}, newest
            first${data.capped ? ' (the oldest are not shown)' : ''}.
          </p>
          <ol class="timeline" data-testid="timeline">
            ${data.changes.map(
              (c, i) =>
                html`<li class=${c.kind} data-position=${c.position} data-digest=${c.digest ?? ''}>
                  <div class="dot"></div>
                  <div class="change">
                    <div class="what">
                      ${
                        c.kind === 'pushed'
                          ? html`${i === 0 ? html`<span class="pill current">current</span>` : ''}
                              <a href=${manifestHref(repo, c.digest)}
                                ><${Digest} digest=${c.digest}
                              /></a>
                              ${
                                c.previous === undefined
                                  ? html`<span class="muted">created</span>`
                                  : html`<span class="muted">moved from</span>${' '}
                                      <${Digest} digest=${c.previous} />`
                              }`
                          : html`<span class="pill deleted">deleted</span>
                              ${c.previous === undefined ? '' : html`<span class="muted">was</span> <${Digest} digest=${c.previous} />`}`
                      }
                    </div>
                    <div class="who">
                      <span title=${c.at}>${when(c.at)}</span>${' '}
                      <span class="muted">(${ago(c.at)})</span>${' · by '}
                      <strong>${c.actor}</strong>${' · position '}<strong>${c.position}</strong>
                      ${` · cluster ${c.cluster} · `}
                      <a href=${asOfHref(repo, c.position)} data-testid="as-of-link"
                        >the repository then</a
                      >
                    </div>
                  </div>
                </li>`,
            )}
          </ol>`}
    <//>
  </section>`;
};
