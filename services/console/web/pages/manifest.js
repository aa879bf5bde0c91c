// One manifest: what the log recorded (media type, size, tags, subject, referrers) and what
// it contains, read through the proxy (config, layers with sizes and holders, index children).
import { html } from 'htm/preact';
import { Digest, Empty, Status, api, bytes, manifestHref, repoHref, useData } from '../lib.js';

const holders = (b) =>
  b.origins === undefined
    ? html`<span class="muted">not in the blob index</span>`
    : html`${b.origins.map((o) => `origin ${o}`).join(', ') || html`<span class="warn">no origin</span>`}${' '}
      ${
        b.backends?.length > 0
          ? html`<span class="pill ok">written back</span>`
          : html`<span class="pill warn">write-back pending</span>`
      }`;

const Blobs = ({ rows }) =>
  html`<table class="list">
    <thead>
      <tr>
        <th>Digest</th>
        <th>Media type</th>
        <th class="num">Size</th>
        <th>Held by</th>
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (b) =>
          html`<tr>
            <td><${Digest} digest=${b.digest} /></td>
            <td><code>${b.mediaType}</code></td>
            <td class="num">${bytes(b.size)}</td>
            <td>${holders(b)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;

export const Manifest = ({ repo, digest }) => {
  const state = useData(() => api('manifest', { repo, digest }), [repo, digest]);
  return html`<section>
    <div class="title">
      <h1>
        <a href="#/" class="muted">Repositories /</a>${' '}
        <a href=${repoHref(repo)} class="muted">${repo} /</a>${' '}<${Digest} digest=${digest} />
      </h1>
    </div>
    <${Status} state=${state}>
      ${(m) =>
        html`<dl class="facts grid" data-testid="manifest">
            <dt>Digest</dt>
            <dd><code>${m.digest}</code></dd>
            <dt>Media type</dt>
            <dd><code>${m.mediaType}</code></dd>
            <dt>Size</dt>
            <dd>${bytes(m.size)}</dd>
            <dt>Tags</dt>
            <dd>${m.tags.join(', ') || html`<span class="muted">untagged</span>`}</dd>
            <dt>Recorded at</dt>
            <dd>position ${m.position}</dd>
            ${
              m.artifactType === undefined
                ? ''
                : html`<dt>Artifact type</dt>
                    <dd><code>${m.artifactType}</code></dd>`
            }
            ${
              m.subject === undefined
                ? ''
                : html`<dt>Subject</dt>
                    <dd>
                      <a href=${manifestHref(repo, m.subject)}><${Digest} digest=${m.subject} /></a>
                    </dd>`
            }
          </dl>
          ${
            m.contentError === undefined
              ? ''
              : html`<div class="banner warn" role="alert">
                  The manifest's contents cannot be shown: ${m.contentError}
                </div>`
          }
          ${
            m.config === undefined
              ? ''
              : html`<h2>Config</h2>
                  <p>
                    ${m.config.platform === undefined ? '' : html`<strong>${m.config.platform}</strong>`}
                    ${m.config.created === undefined ? '' : html` · created ${m.config.created}`}
                  </p>
                  <${Blobs} rows=${[m.config]} />`
          }
          ${
            m.layers === undefined || m.layers.length === 0
              ? ''
              : html`<h2>
                    Layers (${m.layers.length}, ${bytes(m.layers.reduce((s, l) => s + l.size, 0))})
                  </h2>
                  <${Blobs} rows=${m.layers} />`
          }
          ${
            m.children === undefined || m.children.length === 0
              ? ''
              : html`<h2>Index children</h2>
                  <table class="list" data-testid="children">
                    <thead>
                      <tr>
                        <th>Platform</th>
                        <th>Digest</th>
                        <th class="num">Size</th>
                      </tr>
                    </thead>
                    <tbody>
                      ${m.children.map(
                        (c) =>
                          html`<tr data-digest=${c.digest}>
                            <td>${c.platform ?? '–'}</td>
                            <td>
                              ${
                                c.inRepository
                                  ? html`<a href=${manifestHref(repo, c.digest)}
                                      ><${Digest} digest=${c.digest}
                                    /></a>`
                                  : html`<${Digest} digest=${c.digest} />${' '}
                                      <span class="muted">(not pushed)</span>`
                              }
                            </td>
                            <td class="num">${bytes(c.size)}</td>
                          </tr>`,
                      )}
                    </tbody>
                  </table>`
          }
          <h2>Referrers</h2>
          ${
            m.referrers.length === 0
              ? html`<${Empty}>No signatures, SBOMs or other artifacts refer to this manifest.<//>`
              : html`<table class="list" data-testid="referrers">
                  <thead>
                    <tr>
                      <th>Digest</th>
                      <th>Artifact type</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${m.referrers.map(
                      (r) =>
                        html`<tr>
                          <td>
                            <a href=${manifestHref(repo, r.digest)}
                              ><${Digest} digest=${r.digest}
                            /></a>
                          </td>
                          <td><code>${r.artifactType ?? r.mediaType ?? '–'}</code></td>
                        </tr>`,
                    )}
                  </tbody>
                </table>`
          }`}
    <//>
  </section>`;
};
