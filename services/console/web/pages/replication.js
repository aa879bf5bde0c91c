// Replication: every rule with its state, position, lag in events and seconds, what it
// copied and its last failures; live (reloads on every replication event and position).
import { html } from 'htm/preact';
import { Empty, LiveBadge, Status, ago, api, noEvents, useData, useLive, when } from '../lib.js';

const stateClass = {
  'caught-up': 'ok',
  replicating: 'info',
  retrying: 'warn',
  standby: 'muted',
  'not-running': 'warn',
  removed: 'muted',
};

const lagText = (lag) =>
  `${lag.positions} event${lag.positions === 1 ? '' : 's'}` +
  (lag.seconds > 0 ? ` · ${lag.seconds.toFixed(lag.seconds < 10 ? 1 : 0)} s` : '');

const Lag = ({ lag }) =>
  html`<span class=${lag.positions === 0 ? 'ok' : 'warn'} data-testid="lag">${lagText(lag)}</span>`;

export const Replication = () => {
  const state = useData(() => api('replication'), []);
  const connected = useLive(noEvents, { position: () => state.reload() });
  return html`<section>
    <div class="title">
      <h1>Replication</h1>
      <${LiveBadge} connected=${connected} />
    </div>
    <${Status} state=${state}>
      ${(s) => html`
        ${
          s.source === 'log'
            ? html`<div class="banner warn" role="alert">
                The replicator is not answering (${s.reason}); this is what the log recorded, and
                lag is at most what is shown.
              </div>`
            : ''
        }
        <p class="muted">
          Log head <strong>${s.head}</strong> · replicator${' '} <strong>${s.replicator}</strong> ·
          as of ${when(s.at)}
        </p>
        ${
          s.rules.length === 0
            ? html`<${Empty}>
                <p><strong>No replication rules.</strong></p>
                <p>Add one with <code>shoal rules add --repo 'demo/*' --to https://…</code>.</p>
              <//>`
            : html`<table class="list" data-testid="rules">
                <thead>
                  <tr>
                    <th>Rule</th>
                    <th>Matches</th>
                    <th>Destination</th>
                    <th>State</th>
                    <th class="num">Position</th>
                    <th>Lag</th>
                    <th class="num">Copied</th>
                    <th>Last failures</th>
                  </tr>
                </thead>
                <tbody>
                  ${s.rules.map(
                    (r) =>
                      html`<tr data-rule=${r.name ?? r.id}>
                        <td title=${`rule id ${r.id}`}><strong>${r.name ?? r.id}</strong></td>
                        <td><code>${r.repoPattern}:${r.tagPattern}</code></td>
                        <td><code>${r.destination}</code></td>
                        <td>
                          <span class=${`pill ${stateClass[r.state] ?? ''}`}>${r.state}</span>
                        </td>
                        <td class="num">${r.settled}</td>
                        <td>
                          <${Lag} lag=${r.lag} />${
                            r.pending === undefined
                              ? ''
                              : html`<div class="muted">oldest pending @${r.pending.position}</div>`
                          }
                        </td>
                        <td class="num" data-testid="copied">
                          ${r.replicated}${r.skipped > 0 ? html` <span class="muted">(${r.skipped} skipped)</span>` : ''}
                          ${r.lastReplicated === undefined ? '' : html`<div class="muted">${r.lastReplicated.repo}:${r.lastReplicated.tag} ${ago(r.lastReplicated.at)}</div>`}
                        </td>
                        <td data-testid="failures">
                          ${
                            r.failures.total === 0
                              ? html`<span class="muted">none</span>`
                              : html`<strong class=${r.failures.consecutive > 0 ? 'warn' : ''}
                                    >${r.failures.total} (${r.failures.consecutive} in a
                                    row)</strong
                                  >
                                  ${
                                    r.failures.last === undefined
                                      ? ''
                                      : html`<div>
                                          <code
                                            >${r.failures.last.repo}:${r.failures.last.tag}</code
                                          >${` ${r.failures.last.error} `}<span class="muted"
                                            >${ago(r.failures.last.at)}${
                                              r.failures.last.retryAt === undefined
                                                ? ', given up'
                                                : `, retry ${when(r.failures.last.retryAt)}`
                                            }</span
                                          >
                                        </div>`
                                  }`
                          }
                        </td>
                      </tr>`,
                  )}
                </tbody>
              </table>`
        }
      `}
    <//>
  </section>`;
};
