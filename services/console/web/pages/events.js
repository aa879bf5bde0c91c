// The event log: the newest events, then a live tail, filterable by type, stream prefix and
// actor (the filter is applied by the server, on the history and on the live feed alike).
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { Empty, LiveBadge, Status, api, useData, useLive, when } from '../lib.js';

const types = [
  'TagPushed',
  'TagDeleted',
  'ManifestPushed',
  'ManifestDeleted',
  'ManifestReferenced',
  'ManifestCollected',
  'BlobUploaded',
  'BlobPlaced',
  'BlobPersisted',
  'BlobDeleted',
  'BlobReferenced',
  'BlobUnlinked',
  'BlobCollected',
  'BlobErased',
  'ReplicationRuleAdded',
  'ReplicationRuleRemoved',
  'ReplicationSucceeded',
  'ReplicationFailed',
  'RetentionRuleAdded',
  'RetentionRuleRemoved',
  'QuotaSet',
  'QuotaRemoved',
  'OriginJoined',
  'OriginLeft',
];

const summary = (e) => {
  const d = e.data ?? {};
  const parts = [];
  if (d.repo !== undefined) parts.push(d.tag === undefined ? d.repo : `${d.repo}:${d.tag}`);
  if (d.digest !== undefined)
    parts.push(
      String(d.digest)
        .replace(/^sha256:/, '')
        .slice(0, 12),
    );
  if (d.size !== undefined) parts.push(`${d.size} B`);
  if (d.originId !== undefined) parts.push(d.originId);
  if (d.error !== undefined) parts.push(d.error);
  return parts.join(' · ');
};

const max = 300;

export const Events = () => {
  const [filter, setFilter] = useState({ type: '', stream: '', actor: '' });
  const [draft, setDraft] = useState(filter);
  const [tail, setTail] = useState([]);
  const state = useData(() => {
    setTail([]);
    return api('events', { ...filter, limit: 100 });
  }, [filter.type, filter.stream, filter.actor]);
  const connected = useLive(
    filter,
    {
      log: (event) => setTail((rows) => [event, ...rows].slice(0, max)),
      reset: () => state.reload(),
    },
    [filter.type, filter.stream, filter.actor],
  );
  const submit = (e) => {
    e.preventDefault();
    setFilter({ ...draft });
  };
  const field = (name) => (e) => setDraft({ ...draft, [name]: e.currentTarget.value });
  return html`<section>
    <div class="title">
      <h1>Event log</h1>
      <${LiveBadge} connected=${connected} />
    </div>
    <form class="row" onSubmit=${submit}>
      <select aria-label="event type" value=${draft.type} onChange=${field('type')}>
        <option value="">every type</option>
        ${types.map((t) => html`<option value=${t}>${t}</option>`)}
      </select>
      <input
        aria-label="stream prefix"
        placeholder="stream prefix (tag/demo/app)"
        value=${draft.stream}
        onInput=${field('stream')}
      />
      <input
        aria-label="actor"
        placeholder="actor (proxy, build-index…)"
        value=${draft.actor}
        onInput=${field('actor')}
      />
      <button type="submit">Filter</button>
    </form>
    <${Status} state=${state}>
      ${(data) => {
        const seen = new Set(tail.map((e) => e.position));
        const rows = [...tail, ...data.events.filter((e) => !seen.has(e.position))].slice(0, max);
        return rows.length === 0
          ? html`<${Empty}>No event matches yet; new ones appear here as they are appended.<//>`
          : html`<table class="list events" data-testid="events">
              <thead>
                <tr>
                  <th class="num">Position</th>
                  <th>Type</th>
                  <th>Stream</th>
                  <th>What</th>
                  <th>Actor</th>
                  <th>Time</th>
                </tr>
              </thead>
              <tbody>
                ${rows.map(
                  (e) =>
                    html`<tr data-position=${e.position} key=${e.position}>
                      <td class="num">${e.position}</td>
                      <td>
                        <span class=${`type t-${e.type.replace(/[A-Z][a-z]+$/, '')}`}
                          >${e.type}</span
                        >
                      </td>
                      <td><code>${e.stream}</code></td>
                      <td>${summary(e)}</td>
                      <td>${e.actor}</td>
                      <td class="muted">${when(e.at)}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`;
      }}
    <//>
  </section>`;
};
