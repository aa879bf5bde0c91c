import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Service } from '../fixtures/cli';
import { startService, stopChild, tempDir } from '../fixtures/cli';
import { generateImage } from '../fixtures/images';
import { checkoutPort, eventually } from '../fixtures/processes';
import { skopeo, skopeoCopy } from '../fixtures/skopeo';

// The roles as their own processes (build-index, an origin with its seeder, a tracker, the
// proxy and an agent), each exporting OpenTelemetry traces by OTLP to a real Jaeger
// (all-in-one, built by test/services/tools.sh from the Go module proxy). A push with skopeo
// through the proxy must arrive as traces whose spans link proxy → origin → log append (a
// layer) and proxy → build-index → log append (the tag); a pull through the agent as agent →
// swarm download → tracker → origin. Parent links are read back from Jaeger's query API.
const root = resolve(__dirname, '../..');
const jaegerBin = join(root, '.tools/bin/jaeger');

type JaegerSpan = {
  traceID: string;
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; spanID: string; traceID: string }>;
  processID: string;
  tags: Array<{ key: string; value: unknown }>;
};
type JaegerTrace = {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
};

/** A trace's spans with their service and parent resolved. */
const spansOf = (trace: JaegerTrace) => {
  const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
  const service = (s: JaegerSpan) => trace.processes[s.processID]?.serviceName ?? '?';
  const tag = (s: JaegerSpan, key: string) => s.tags.find((t) => t.key === key)?.value;
  const parent = (s: JaegerSpan) => {
    const ref = s.references.find((r) => r.refType === 'CHILD_OF');
    return ref === undefined ? undefined : byId.get(ref.spanID);
  };
  /** Spans of a service, server or client (`span.kind`), named like `name`. */
  const find = (svc: string, kind: string, name: RegExp) =>
    trace.spans.filter(
      (s) => service(s) === svc && tag(s, 'span.kind') === kind && name.test(s.operationName),
    );
  /** Whether `ancestor` is `s`'s parent, grandparent, … */
  const under = (s: JaegerSpan, ancestor: JaegerSpan): boolean => {
    for (let p = parent(s); p !== undefined; p = parent(p)) if (p === ancestor) return true;
    return false;
  };
  return { service, tag, parent, find, under };
};

describe('traces: every role exports to Jaeger; a push and a pull are linked traces', () => {
  let dir: ReturnType<typeof tempDir>;
  let jaeger: ChildProcess | undefined;
  const services: Service[] = [];
  let query: string;
  let env: NodeJS.ProcessEnv;
  let proxy: Service;
  let agent: Service;

  const traces = async (service: string): Promise<JaegerTrace[]> => {
    const response = await fetch(
      `${query}/api/traces?service=${encodeURIComponent(service)}&limit=200&lookback=1h`,
    );
    if (response.status !== 200) throw new Error(`jaeger answered ${response.status}`);
    return ((await response.json()) as { data: JaegerTrace[] }).data;
  };

  /** Writes a role's YAML and starts `shoal <role> --config <file>` with tracing on. */
  const start = async (role: string, config: string[], ready: RegExp) => {
    const file = join(dir.path, `${role}.yaml`);
    writeFileSync(file, `${config.join('\n')}\n`);
    const service = await startService([role, '--config', file], ready, env, 60_000);
    services.push(service);
    return service;
  };

  beforeAll(async () => {
    for (const tool of [jaegerBin, skopeo]) {
      if (!existsSync(tool)) throw new Error(`${tool} is missing: run test/services/tools.sh`);
    }
    dir = tempDir('shoal-traces-e2e-');
    const [otlp, http, grpc] = [13, 14, 15].map(checkoutPort) as [number, number, number];
    const jaegerConfig = join(dir.path, 'jaeger.yaml');
    writeFileSync(
      jaegerConfig,
      [
        'service:',
        '  extensions: [jaeger_storage, jaeger_query]',
        '  pipelines:',
        '    traces: { receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter] }',
        '  telemetry: { metrics: { level: none }, logs: { level: warn } }',
        'extensions:',
        '  jaeger_storage: { backends: { memstore: { memory: { max_traces: 10000 } } } }',
        '  jaeger_query:',
        '    storage: { traces: memstore }',
        `    http: { endpoint: "127.0.0.1:${http}" }`,
        `    grpc: { endpoint: "127.0.0.1:${grpc}" }`,
        'receivers:',
        `  otlp: { protocols: { http: { endpoint: "127.0.0.1:${otlp}" } } }`,
        'processors: { batch: { timeout: 200ms } }',
        'exporters: { jaeger_storage_exporter: { trace_storage: memstore } }',
        '',
      ].join('\n'),
    );
    jaeger = spawn(jaegerBin, ['--config', jaegerConfig], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    jaeger.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    const exited = new Promise<never>((_, reject) =>
      jaeger?.once('exit', (code) => reject(new Error(`jaeger exited (${code}):\n${stderr}`))),
    );
    exited.catch(() => undefined);
    query = `http://127.0.0.1:${http}`;
    await Promise.race([
      exited,
      eventually('jaeger to answer', async () => ((await traces('none')) ? true : undefined)),
    ]);

    env = {
      SHOAL_LOG_LEVEL: 'warn',
      SHOAL_TRACING_ENABLED: 'true',
      SHOAL_TRACING_ENDPOINT: `http://127.0.0.1:${otlp}/v1/traces`,
    };
    const data = join(dir.path, 'data');
    const common = [`dataDir: ${JSON.stringify(data)}`, 'listen: { host: 127.0.0.1, port: 0 }'];
    const base = 20000 + Math.floor(Math.random() * 12000);
    const buildIndex = await start('build-index', common, /build-index listening on (http:\S+)/);
    const origin = await start(
      'origin',
      [...common, 'id: a', `p2p: { port: ${base} }`],
      /origin a listening on (http:\S+)/,
    );
    const tracker = await start(
      'tracker',
      // The tracker keeps no data directory.
      [
        'listen: { host: 127.0.0.1, port: 0 }',
        `origins: { urls: [${JSON.stringify(origin.url)}] }`,
      ],
      /tracker listening on (http:\S+)/,
    );
    proxy = await start(
      'proxy',
      [...common, `buildIndex: { url: ${JSON.stringify(buildIndex.url)} }`],
      /proxy listening on (http:\S+)/,
    );
    agent = await start(
      'agent',
      [
        ...common,
        'id: a1',
        `trackers: { urls: [${JSON.stringify(tracker.url)}] }`,
        `buildIndex: { url: ${JSON.stringify(buildIndex.url)} }`,
        `proxy: { url: ${JSON.stringify(proxy.url)} }`,
      ],
      /agent \S+ listening on (http:\S+)/,
    );
  }, 180_000);

  afterAll(async () => {
    for (const service of services.reverse()) await service.stop();
    if (jaeger !== undefined) await stopChild(jaeger);
    dir?.cleanup();
  }, 60_000);

  it('a push: proxy → origin, proxy → build-index → log.append, one trace per request', async () => {
    const image = await generateImage({
      dir: join(dir.path, 'image'),
      layers: 1,
      layerSize: 1 << 20,
    });
    const repo = `traces/app-${randomBytes(3).toString('hex')}`;
    skopeoCopy(image.layoutRef, `docker://${proxy.url.replace(/^http:\/\//, '')}/${repo}:v1`);
    // The manifest PUT: the proxy's server span, its calls to the origin (the manifest's
    // bytes) and to build-index (the tag), build-index's server span and its log append.
    const found = await eventually(
      'the manifest push trace in jaeger',
      async () => {
        for (const trace of await traces('shoal-proxy')) {
          const t = spansOf(trace);
          const [put] = t
            .find('shoal-proxy', 'server', /^PUT /)
            .filter((s) => String(t.tag(s, 'url.path')).includes(`/manifests/v1`));
          const appends = trace.spans.filter(
            (s) => t.service(s) === 'shoal-build-index' && s.operationName === 'log.append',
          );
          if (put !== undefined && appends.length > 0) return { trace, t, put, appends };
        }
        return undefined;
      },
      30_000,
      250,
    );
    const { t, put, appends } = found;
    expect(t.parent(put)).toBeUndefined();
    // build-index's server span is the child of a proxy client span under the PUT.
    const [tagPut] = found.trace.spans.filter(
      (s) => t.service(s) === 'shoal-build-index' && t.tag(s, 'span.kind') === 'server',
    );
    expect(tagPut).toBeDefined();
    const caller = t.parent(tagPut as JaegerSpan) as JaegerSpan;
    expect(t.service(caller)).toBe('shoal-proxy');
    expect(t.tag(caller, 'span.kind')).toBe('client');
    expect(t.under(caller, put)).toBe(true);
    // The append is build-index's, under its server span, and recorded the tag event.
    const append = appends[0] as JaegerSpan;
    expect(t.under(append, tagPut as JaegerSpan)).toBe(true);
    expect(String(t.tag(append, 'shoal.event_types'))).toMatch(/Tag/);
    expect(Number(t.tag(append, 'shoal.position'))).toBeGreaterThan(0);
    // The origin took the manifest's bytes in the same trace, called from the proxy.
    const originSpans = t.find('shoal-origin', 'server', /./);
    expect(originSpans.length).toBeGreaterThan(0);
    for (const s of originSpans) {
      expect(t.service(t.parent(s) as JaegerSpan)).toBe('shoal-proxy');
      expect(t.under(s, put)).toBe(true);
    }
    // A layer upload is its own trace: proxy → origin, the origin appending what it stored.
    const uploads = (await traces('shoal-proxy')).filter((trace) => {
      const u = spansOf(trace);
      return (
        u
          .find('shoal-proxy', 'server', /^PUT /)
          .some((s) => String(u.tag(s, 'url.path')).includes('/blobs/uploads/')) &&
        u.find('shoal-origin', 'server', /./).length > 0
      );
    });
    expect(uploads.length).toBeGreaterThan(0);
    for (const trace of uploads) {
      const u = spansOf(trace);
      const stored = trace.spans.filter(
        (s) => u.service(s) === 'shoal-origin' && s.operationName === 'log.append',
      );
      expect(stored.length).toBeGreaterThan(0);
      for (const s of stored) {
        const server = u.find('shoal-origin', 'server', /./).find((o) => u.under(s, o));
        expect(server).toBeDefined();
        expect(u.service(u.parent(server as JaegerSpan) as JaegerSpan)).toBe('shoal-proxy');
      }
    }
  }, 180_000);

  it('a pull through the agent: agent → tracker → origin, the swarm download in the trace', async () => {
    const image = await generateImage({
      dir: join(dir.path, 'pull'),
      layers: 1,
      layerSize: 2 << 20,
    });
    const repo = `traces/pull-${randomBytes(3).toString('hex')}`;
    skopeoCopy(image.layoutRef, `docker://${proxy.url.replace(/^http:\/\//, '')}/${repo}:v1`);
    skopeoCopy(
      `docker://${agent.url.replace(/^http:\/\//, '')}/${repo}:v1`,
      `oci:${join(dir.path, 'pulled')}:v1`,
    );
    const { digest: layer, size } = image.manifests[0]?.layers[0] as {
      digest: string;
      size: number;
    };
    const found = await eventually(
      'the layer pull trace in jaeger',
      async () => {
        for (const trace of await traces('shoal-agent')) {
          const t = spansOf(trace);
          const [get] = t
            .find('shoal-agent', 'server', /^GET /)
            .filter((s) => String(t.tag(s, 'url.path')).endsWith(layer));
          const download = trace.spans.find((s) => s.operationName === 'p2p.download');
          const trackerSpans = t.find('shoal-tracker', 'server', /./);
          if (get !== undefined && download !== undefined && trackerSpans.length > 0) {
            return { trace, t, get, download, trackerSpans };
          }
        }
        return undefined;
      },
      30_000,
      250,
    );
    const { t, get, download, trackerSpans } = found;
    expect(t.parent(get)).toBeUndefined();
    expect(t.under(download, get)).toBe(true);
    expect(Number(t.tag(download, 'shoal.bytes'))).toBe(size);
    // Only the origin's seeder had the blob: its pieces came from the origin.
    expect(Number(t.tag(download, 'shoal.bytes_from_origins'))).toBe(size);
    // The tracker's answer (metainfo) was asked inside the download, by an agent client
    // span; the tracker's other spans in the trace are the origin's seeder announcing itself
    // while it joins the swarm at the tracker's request.
    const fromAgent = trackerSpans.filter(
      (s) => t.service(t.parent(s) as JaegerSpan) === 'shoal-agent',
    );
    expect(fromAgent.length).toBeGreaterThan(0);
    for (const s of fromAgent) {
      const caller = t.parent(s) as JaegerSpan;
      expect(t.tag(caller, 'span.kind')).toBe('client');
      expect(t.under(caller, download)).toBe(true);
    }
    for (const s of trackerSpans) {
      const caller = t.parent(s) as JaegerSpan;
      expect(t.tag(caller, 'span.kind')).toBe('client');
      expect(['shoal-agent', 'shoal-origin']).toContain(t.service(caller));
      expect(t.under(s, download)).toBe(true);
    }
    // …and the tracker asked the origin (metainfo, joining the swarm) within the same trace.
    const originSpans = t.find('shoal-origin', 'server', /./);
    expect(originSpans.length).toBeGreaterThan(0);
    for (const s of originSpans) {
      expect(t.service(t.parent(s) as JaegerSpan)).toBe('shoal-tracker');
      expect(trackerSpans.some((tracker) => t.under(s, tracker))).toBe(true);
    }
  }, 180_000);
});
