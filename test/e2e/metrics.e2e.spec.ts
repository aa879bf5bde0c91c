import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Service } from '../fixtures/cli';
import { startService, stopChild, tempDir } from '../fixtures/cli';
import { generateImage } from '../fixtures/images';
import { checkoutPort, eventually } from '../fixtures/processes';
import { skopeo, skopeoCopy } from '../fixtures/skopeo';

// A real Prometheus (Debian's) scrapes every role of `shoal dev --agents 3` once a second
// while an image is pushed through the proxy, replicated by a rule, and pulled through the
// proxy and through agent 3. Its HTTP API must show the series the README documents (names,
// types, labels: the table is checked against what was scraped), and those that must move do.
// Every query of the Grafana dashboard under deploy/ must name a metric the scrape saw.
const root = resolve(__dirname, '../..');
const prometheusBin = '/usr/bin/prometheus';

type Endpoints = {
  proxy: string;
  buildIndex: string;
  origins: string[];
  trackers: string[];
  agents: string[];
};
type Sample = { metric: Record<string, string>; value: [number, string] };

/** Labels Prometheus or prom-client add to every series; not part of a metric's own. */
const commonLabels = new Set(['__name__', 'instance', 'job', 'service', 'le']);

describe('metrics: Prometheus scrapes shoal dev --agents 3', () => {
  let dir: ReturnType<typeof tempDir>;
  let dev: Service | undefined;
  let prometheus: ChildProcess | undefined;
  let endpoints: Endpoints;
  let api: string;

  const get = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${api}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? response.status}`);
    return body.data;
  };
  const query = async (expr: string): Promise<Sample[]> =>
    (await get<{ result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result;
  /** The single value of `sum(expr)`, or undefined when no series matches. */
  const total = async (expr: string): Promise<number | undefined> => {
    const [sample] = await query(`sum(${expr})`);
    return sample === undefined ? undefined : Number(sample.value[1]);
  };
  /** Waits until Prometheus has scraped a value of `sum(expr)` that `ok` accepts. */
  const scraped = (expr: string, ok: (value: number) => boolean, timeoutMs = 30_000) =>
    eventually(
      `a scrape where sum(${expr}) is as expected`,
      async () => {
        const value = await total(expr);
        return value !== undefined && ok(value) ? value : undefined;
      },
      timeoutMs,
      250,
    );

  beforeAll(async () => {
    for (const tool of [prometheusBin, skopeo]) {
      if (!existsSync(tool)) throw new Error(`${tool} is missing: run test/services/tools.sh`);
    }
    dir = tempDir('shoal-metrics-e2e-');
    const base = 20000 + Math.floor(Math.random() * 12000);
    const dataDir = join(dir.path, 'dev');
    dev = await startService(
      ['dev', '--data-dir', dataDir, '--port-base', String(base), '--agents', '3'],
      /\bproxy\s+(http:\/\/\S+)/,
      {},
      120_000,
    );
    endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')) as Endpoints;
    const hostOf = (url: string) => url.replace(/^http:\/\//, '');
    const jobs: Record<string, string[]> = {
      proxy: [endpoints.proxy],
      'build-index': [endpoints.buildIndex],
      origin: endpoints.origins,
      tracker: endpoints.trackers,
      agent: endpoints.agents,
    };
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 900ms',
      'scrape_configs:',
      ...Object.entries(jobs).flatMap(([job, urls]) => [
        `  - job_name: ${job}`,
        '    static_configs:',
        `      - targets: [${urls.map((u) => `'${hostOf(u)}'`).join(', ')}]`,
      ]),
      '',
    ].join('\n');
    writeFileSync(join(dir.path, 'prometheus.yml'), config);
    const port = checkoutPort(12);
    api = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      prometheusBin,
      [
        `--config.file=${join(dir.path, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir.path, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    prometheus.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<never>((_, reject) =>
      prometheus?.once('exit', (code) =>
        reject(new Error(`prometheus exited (${code}):\n${stderr}`)),
      ),
    );
    exited.catch(() => undefined);
    const targets = Object.values(jobs).flat().length;
    await Promise.race([
      exited,
      eventually(
        `all ${targets} targets up`,
        async () => {
          const { activeTargets } = await get<{
            activeTargets: Array<{ health: string; scrapeUrl: string; lastError: string }>;
          }>('/api/v1/targets');
          const up = activeTargets.filter((t) => t.health === 'up');
          return up.length === targets ? up : undefined;
        },
        60_000,
        250,
      ),
    ]);
  }, 240_000);

  afterAll(async () => {
    if (prometheus !== undefined) await stopChild(prometheus);
    await dev?.stop();
    dir?.cleanup();
  }, 60_000);

  it('the series exist and move during a push, a replication and pulls', async () => {
    const before = {
      proxyRequests: (await total('shoal_http_requests_total{service="proxy"}')) ?? 0,
      appends: (await total('shoal_log_append_duration_seconds_count')) ?? 0,
      buildIndexPosition: await scraped(
        'shoal_projection_position{service="build-index",projection="build-index"}',
        () => true,
      ),
    };
    // Idle series are there before any traffic, at their documented starting values.
    expect(await total('shoal_origin_jobs_pending')).toBeGreaterThanOrEqual(0);
    expect(await total('shoal_origin_disk_bytes{kind="total"}')).toBeGreaterThan(0);
    expect(await total('shoal_agent_cache_quota_bytes')).toBeGreaterThan(0);
    expect((await query('shoal_agent_swarms')).length).toBe(3);

    const repo = `metrics/app-${randomBytes(3).toString('hex')}`;
    // A rule replicating the repository to the cluster itself: the lag per rule must show
    // and fall to zero (the copy finds everything already there).
    const rule = await fetch(`${endpoints.buildIndex}/v1/replication/rules`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'self', repo: 'metrics/**', to: endpoints.proxy }),
    });
    expect(rule.status).toBe(201);
    const { rule: added } = (await rule.json()) as { rule: { id: string } };

    const image = await generateImage({
      dir: join(dir.path, 'image'),
      layers: 2,
      layerSize: 2 * 1024 * 1024,
    });
    const proxyHost = endpoints.proxy.replace(/^http:\/\//, '');
    skopeoCopy(image.layoutRef, `docker://${proxyHost}/${repo}:v1`);
    const agent3 = (endpoints.agents[2] as string).replace(/^http:\/\//, '');
    for (const [from, to] of [
      [agent3, 'through-agent'],
      [proxyHost, 'through-proxy'],
    ] as const) {
      skopeoCopy(`docker://${from}/${repo}:v1`, `oci:${join(dir.path, to)}:v1`);
    }

    // Proxy: requests by route and status with durations; bytes pushed and pulled.
    await scraped('shoal_proxy_pushed_bytes_total{kind="blob"}', (v) => v >= image.layerBytes);
    await scraped('shoal_proxy_pushed_bytes_total{kind="manifest"}', (v) => v > 0);
    await scraped('shoal_proxy_pulled_bytes_total{kind="blob"}', (v) => v >= image.layerBytes);
    await scraped('shoal_proxy_pulled_bytes_total{kind="manifest"}', (v) => v > 0);
    await scraped('shoal_http_requests_total{service="proxy"}', (v) => v > before.proxyRequests);
    const routes = await query(
      'sum by (route, status) (shoal_http_requests_total{service="proxy",method="PUT"})',
    );
    expect(routes.map((s) => s.metric.status)).toContain('201');
    expect(
      await total('shoal_http_request_duration_seconds_count{service="proxy",method="PATCH"}'),
    ).toBeGreaterThan(0);
    // Origin: bytes in, egress by destination, the write-back queue, disk use.
    await scraped('shoal_origin_bytes_received_total', (v) => v >= image.layerBytes);
    await scraped('shoal_origin_egress_bytes_total{destination="client"}', (v) => v > 0);
    await scraped('shoal_origin_egress_bytes_total{destination="agent"}', (v) => v > 0);
    await scraped('shoal_origin_disk_bytes{kind="used"}', (v) => v >= image.layerBytes);
    expect((await query('shoal_origin_jobs_oldest_age_seconds')).length).toBe(4); // write-back, place, drop, erase
    // Agents: bytes in by source, piece latency, swarms, cache.
    await scraped('shoal_agent_bytes_in_total', (v) => v >= image.layerBytes);
    await scraped('shoal_agent_piece_duration_seconds_count', (v) => v > 0);
    await scraped('shoal_agent_cache_bytes', (v) => v >= image.layerBytes);
    await scraped('shoal_agent_swarms', (v) => v > 0);
    // Tracker: announces, peers, swarms.
    await scraped('shoal_tracker_announces_total', (v) => v > 0);
    await scraped('shoal_tracker_peers', (v) => v > 0);
    await scraped('shoal_tracker_swarms', (v) => v > 0);
    // The log and projections: appends timed, positions moved, lag back to zero.
    await scraped('shoal_log_append_duration_seconds_count', (v) => v > before.appends);
    await scraped(
      'shoal_projection_position{service="build-index",projection="build-index"}',
      (v) => v > before.buildIndexPosition,
    );
    await scraped('shoal_projection_lag_positions{service="build-index"}', (v) => v === 0);
    // Replication: the rule's lag, per rule, falls to zero once its change is done.
    await scraped(`shoal_replication_changes_total{rule="${added.id}"}`, (v) => v > 0, 60_000);
    await scraped(`shoal_replication_lag_positions{rule="${added.id}"}`, (v) => v === 0);
    expect(await total(`shoal_replication_lag_seconds{rule="${added.id}"}`)).toBe(0);
  }, 240_000);

  it('the README metrics table is the one the scrape gives (names, types, units, labels, help)', async () => {
    const metadata =
      await get<Record<string, Array<{ type: string; help: string }>>>('/api/v1/metadata');
    const series = await get<Array<Record<string, string>>>(
      `/api/v1/series?match[]=${encodeURIComponent('{__name__=~"shoal_.+"}')}`,
    );
    const rows: string[] = [];
    for (const name of Object.keys(metadata).sort()) {
      if (!name.startsWith('shoal_')) continue;
      const { type, help } = metadata[name]?.[0] ?? { type: 'unknown', help: '' };
      const names = type === 'histogram' ? [`${name}_bucket`, `${name}_count`] : [name];
      const labels = new Set<string>();
      for (const s of series) {
        if (!names.includes(s.__name__ as string)) continue;
        for (const label of Object.keys(s)) if (!commonLabels.has(label)) labels.add(label);
      }
      // The unit is in the name, as Prometheus's naming rules ask.
      const unit = name.includes('_seconds')
        ? 'seconds'
        : name.includes('_bytes')
          ? 'bytes'
          : name.includes('_position')
            ? 'log positions'
            : name.endsWith('_total')
              ? 'count'
              : '—';
      const labelList =
        [...labels]
          .sort()
          .map((l) => `\`${l}\``)
          .join(', ') || '—';
      rows.push(
        `| \`${name}\` | ${type} | ${unit} | ${labelList} | ${help.replace(/\|/g, '\\|')} |`,
      );
    }
    expect(rows.length).toBeGreaterThan(30);
    const readmePath = join(root, 'README.md');
    const readme = readFileSync(readmePath, 'utf8');
    const header = '| Name | Type | Unit | Labels | Meaning |\n|---|---|---|---|---|\n';
    const at = readme.indexOf(header);
    expect(at).toBeGreaterThan(0);
    const from = at + header.length;
    const to = readme.indexOf('\n\n', from);
    const table = `${rows.join('\n')}`;
    // SHOAL_UPDATE_METRICS_TABLE=1 writes the scraped table into the README (then review it).
    if (process.env.SHOAL_UPDATE_METRICS_TABLE === '1') {
      writeFileSync(readmePath, `${readme.slice(0, from)}${table}${readme.slice(to)}`);
    }
    expect(readme.slice(from, to)).toBe(table);
  });

  it('every query of the Grafana dashboard names a metric the scrape saw', async () => {
    const dashboard = JSON.parse(readFileSync(join(root, 'deploy/grafana/shoal.json'), 'utf8')) as {
      panels: Array<{ targets?: Array<{ expr: string }> }>;
    };
    const names = new Set(await get<string[]>('/api/v1/label/__name__/values'));
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    expect(exprs.length).toBeGreaterThan(20);
    const unseen: string[] = [];
    for (const expr of exprs) {
      const metrics = expr.match(/\bshoal_\w+/g) ?? [];
      expect(metrics.length).toBeGreaterThan(0);
      for (const metric of metrics) if (!names.has(metric)) unseen.push(`${metric} in ${expr}`);
      // Each query also evaluates (Prometheus parses it; $__rate_interval is Grafana's).
      await query(expr.replaceAll('$__rate_interval', '1m'));
    }
    expect(unseen).toEqual([]);
  });
});
