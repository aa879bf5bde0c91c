// Shared helpers of the console's pages: the API, the live feed, formatting, small widgets.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/** Calls the console's API; throws an Error with the problem's detail on failure. */
export const api = async (path, params = {}) => {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== '') query.set(key, String(value));
  }
  const text = query.toString();
  let response;
  try {
    response = await fetch(`/api/${path}${text === '' ? '' : `?${text}`}`);
  } catch {
    throw new Error('the console cannot be reached');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail ?? body.message ?? body.title ?? `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
};

/**
 * A live view that wants no log events, only `position`, `health` (and `swarms`): no event
 * type is named `None`, so the server's filter lets none through.
 */
export const noEvents = { type: 'None' };

/**
 * The live feed (server-sent events): one EventSource per page, its listeners by event name.
 * The browser reconnects by itself and sends Last-Event-ID, so no event is lost.
 */
export const useLive = (params, handlers, deps = []) => {
  const ref = useRef(handlers);
  ref.current = handlers;
  const [connected, setConnected] = useState(false);
  useEffect(() => {
    const query = new URLSearchParams(params).toString();
    const source = new EventSource(`/api/live${query === '' ? '' : `?${query}`}`);
    source.onopen = () => setConnected(true);
    source.onerror = () => setConnected(false);
    for (const name of ['log', 'position', 'health', 'swarms', 'reset']) {
      source.addEventListener(name, (message) => {
        const handler = ref.current[name];
        if (handler !== undefined) handler(JSON.parse(message.data));
      });
    }
    return () => source.close();
  }, deps);
  return connected;
};

/**
 * Loads `fetcher()` now and again whenever `reload` is called (at most every 250 ms, the
 * last call always served): the state a page shows, its error and whether it is loading.
 */
export const useData = (fetcher, deps = []) => {
  const [state, setState] = useState({ loading: true });
  const timer = useRef(undefined);
  const generation = useRef(0);
  const load = () => {
    const mine = (generation.current += 1);
    fetcher().then(
      (data) => mine === generation.current && setState({ data }),
      (error) =>
        mine === generation.current && setState({ error: error.message, status: error.status }),
    );
  };
  useEffect(() => {
    setState({ loading: true });
    load();
    return () => clearTimeout(timer.current);
  }, deps);
  const reload = () => {
    clearTimeout(timer.current);
    timer.current = setTimeout(load, 250);
  };
  return { ...state, reload };
};

export const bytes = (n) => {
  if (n === undefined || n === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
};

export const shortDigest = (digest) =>
  digest === undefined ? '–' : digest.replace(/^sha256:/, '').slice(0, 12);

/** A time as local date and time, and how long ago. */
export const when = (iso) => {
  if (iso === undefined || iso === '') return '–';
  const date = new Date(iso);
  return date.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
};

export const ago = (iso) => {
  if (iso === undefined || iso === '') return '';
  const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
};

export const link = (href, text, attrs = {}) => html`<a href=${href} ...${attrs}>${text}</a>`;

export const repoHref = (repo) => `#/repo/${encodeURIComponent(repo)}`;
/** A repository as of a log position (or time). */
export const asOfHref = (repo, at) =>
  `#/repo/${encodeURIComponent(repo)}?at=${encodeURIComponent(at)}`;
export const historyHref = (repo, tag) =>
  `#/history/${encodeURIComponent(repo)}/${encodeURIComponent(tag)}`;
export const manifestHref = (repo, digest) =>
  `#/manifest/${encodeURIComponent(repo)}/${encodeURIComponent(digest)}`;

export const Digest = ({ digest }) =>
  html`<code class="digest" title=${digest}>${shortDigest(digest)}</code>`;

/** What a page shows while loading, on error, or when it has nothing. */
export const Status = ({ state, children }) => {
  if (state.error !== undefined) {
    return html`<div class="banner error" role="alert">${state.error}</div>`;
  }
  if (state.data === undefined) return html`<p class="loading">Loading…</p>`;
  return children(state.data);
};

export const Empty = ({ children }) => html`<div class="empty">${children}</div>`;

export const LiveBadge = ({ connected }) =>
  html`<span class=${`live ${connected ? 'on' : 'off'}`} data-testid="live-badge"
    >${connected ? 'live' : 'reconnecting…'}</span
  >`;

/** A bar of `done` out of `total`. */
export const Bar = ({ done, total, label }) => {
  const share = total > 0 ? Math.min(1, done / total) : 0;
  return html`<div class="bar" title=${label ?? `${Math.round(share * 100)}%`}>
    <div class="fill" style=${`width:${(share * 100).toFixed(1)}%`}></div>
    <span>${label ?? `${Math.round(share * 100)}%`}</span>
  </div>`;
};
