import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { Script } from 'node:vm';
import type { TObject } from '@sinclair/typebox';
import { parseDocument } from 'yaml';
import { AgentConfigSchema } from '../../services/agent/config';
import { BuildIndexRoleConfigSchema } from '../../services/cli/commands/replicator';
import { ConsoleConfigSchema } from '../../services/console/config';
import { OriginConfigSchema } from '../../services/origin/config';
import { ProxyConfigSchema } from '../../services/proxy/config';
import { ReplicatorConfigSchema } from '../../services/replicator/config';
import { loadConfig } from '../../services/shared/config';
import type { LogConfig } from '../../services/shared/logConfig';
import { TrackerConfigSchema } from '../../services/tracker/config';

// docker-compose.yml cannot run here (no Docker engine), so this keeps it in step with the
// real configuration: every Shoal service's config file exists, validates against the schema
// its `shoal <role>` command loads (with no key the schema does not know), and the addresses,
// ports, volumes, credentials, start order and profiles that services name of each other
// agree. `checkCompose` returns problems, so the mutations at the end can show that each kind
// of check bites.

const root = resolve(__dirname, '../..');

/** The schema each `shoal <role> --config FILE` validates its file against. */
const roleSchemas: Record<string, TObject> = {
  'build-index': BuildIndexRoleConfigSchema,
  replicator: ReplicatorConfigSchema,
  origin: OriginConfigSchema,
  proxy: ProxyConfigSchema,
  tracker: TrackerConfigSchema,
  agent: AgentConfigSchema,
  console: ConsoleConfigSchema,
};

type Compose = {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
};
type ComposeService = {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, unknown> | string[];
  ports?: Array<string | number>;
  volumes?: string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  profiles?: string[];
  healthcheck?: { test?: string[] | string };
  restart?: string;
};

/** The roles' configs, as loaded by the services: file, then the service's environment. */
type ConfigOf = { role: string; name: string; file: string; config: RoleConfig };

/** What the checks read of any role's config (each role's schema has a subset of these). */
type RoleConfig = {
  listen: { host: string; port: number };
  cluster?: string;
  dataDir?: string;
  log?: LogConfig;
  id?: string;
  advertiseUrl?: string;
  replicas?: number;
  backend?: {
    type: string;
    path: string;
    s3: { bucket: string; endpoint: string; accessKeyId: string; secretAccessKey: string };
  };
  buildIndex?: { url: string; urls?: string[] };
  origins?: { urls: string[]; replicas?: number };
  proxy?: { url: string };
  trackers?: { urls: string[] };
  p2p?: { port: number; advertiseHost?: string };
  replication?: { enabled: boolean; source: { originUrl: string; replicas: number } };
};

const readCompose = (text: string): Compose => {
  const document = parseDocument(text, { merge: true });
  if (document.errors.length > 0) throw new Error(document.errors.map(String).join('\n'));
  return document.toJS() as Compose;
};

const environmentOf = (service: ComposeService): NodeJS.ProcessEnv => {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e) => [e.split('=')[0], e.split('=').slice(1).join('=')]));
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
};

const dependsOn = (service: ComposeService): Record<string, string | undefined> => {
  const deps = service.depends_on ?? {};
  return Array.isArray(deps)
    ? Object.fromEntries(deps.map((d) => [d, undefined]))
    : Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, v?.condition]));
};

/** `[host:]hostPort:containerPort[/proto]` → the container port and the host port. */
const parsePort = (spec: string | number) => {
  const parts = String(spec)
    .replace(/\/\w+$/, '')
    .split(':');
  return { container: Number(parts[parts.length - 1]), host: parts.slice(0, -1).join(':') };
};

/** `source:target[:mode]` volumes; a named volume has a source without `/` or `.`. */
const parseVolume = (spec: string) => {
  const [source = '', target = '', mode] = spec.split(':');
  return { source, target, mode, named: !/^[./~]/.test(source) };
};

const hostPortOf = (url: string) => {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || 80) };
};

/** Every problem found in a compose file, in words; empty when all is consistent. */
/** The words of a service's command or entrypoint, as one list. */
const wordsOf = (value: string[] | string | undefined): string[] =>
  value === undefined ? [] : Array.isArray(value) ? value.map(String) : value.split(/\s+/);

/** Every problem found in a compose file, in words; empty when all is consistent. */
const checkCompose = (compose: Compose, options: { composeDir: string; dockerfile: string }) => {
  const problems: string[] = [];
  const services = compose.services ?? {};
  const declaredVolumes = new Set(Object.keys(compose.volumes ?? {}));
  const usedVolumes = new Set<string>();

  // The Shoal image: the Dockerfile at the root, its entrypoint the CLI.
  const dockerfile = options.dockerfile;
  if (!/^ENTRYPOINT \["node", ?"dist\/services\/cli\/main\.js"\]$/m.test(dockerfile)) {
    problems.push('Dockerfile: ENTRYPOINT is not ["node","dist/services/cli/main.js"]');
  }

  const kafkaServices = Object.entries(services).filter(([, s]) =>
    (s.image ?? '').startsWith('apache/kafka'),
  );
  /** host:port the Kafka services advertise (their listeners other containers reach). */
  const advertised = new Map<string, string>();
  for (const [name, s] of kafkaServices) {
    const listeners = String(environmentOf(s).KAFKA_ADVERTISED_LISTENERS ?? '');
    for (const listener of listeners.split(',').filter(Boolean)) {
      const { hostname, port } = new URL(listener.replace(/^\w+:\/\//, 'kafka://'));
      advertised.set(`${hostname}:${port}`, name);
    }
  }

  const configs: ConfigOf[] = [];
  const images = new Set<string>();
  for (const [name, service] of Object.entries(services)) {
    const volumes = (service.volumes ?? []).map(parseVolume);
    for (const v of volumes) if (v.named) usedVolumes.add(v.source);
    const command = Array.isArray(service.command) ? service.command : undefined;
    const role = command?.[0];
    if (role === undefined || roleSchemas[role] === undefined) continue;
    const where = `service ${name}`;
    images.add(String(service.image));
    const context = typeof service.build === 'string' ? service.build : service.build?.context;
    if (context !== '.') problems.push(`${where}: not built from the repository root`);

    // The config file: named on the command line, mounted from the repository.
    const configAt = command?.indexOf('--config') ?? -1;
    const containerPath = configAt < 0 ? undefined : command?.[configAt + 1];
    if (containerPath === undefined) {
      problems.push(`${where}: runs ${role} without --config`);
      continue;
    }
    const mount = volumes.find(
      (v) => !v.named && containerPath.startsWith(`${v.target.replace(/\/$/, '')}/`),
    );
    if (mount === undefined) {
      problems.push(`${where}: ${containerPath} is not inside a mounted directory`);
      continue;
    }
    const file = resolve(
      options.composeDir,
      mount.source,
      posix.relative(mount.target, containerPath),
    );
    if (!existsSync(file)) {
      problems.push(`${where}: config ${containerPath} (${file}) does not exist`);
      continue;
    }
    let config: RoleConfig;
    try {
      config = loadConfig(roleSchemas[role] as TObject, {
        file,
        env: environmentOf(service),
      }) as unknown as RoleConfig;
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
      continue;
    }
    configs.push({ role, name, file, config });

    // Reachable from the other containers, on the ports published and health-checked.
    if (config.listen.host !== '0.0.0.0' && config.listen.host !== '::') {
      problems.push(
        `${where}: listens on ${config.listen.host}, not reachable from other containers`,
      );
    }
    for (const port of service.ports ?? []) {
      if (parsePort(port).container !== config.listen.port) {
        problems.push(`${where}: publishes ${port} but listens on ${config.listen.port}`);
      }
    }
    const health = ([] as string[]).concat(service.healthcheck?.test ?? []).join(' ');
    const healthPort = /127\.0\.0\.1:(\d+)\/health/.exec(health)?.[1];
    if (healthPort === undefined) problems.push(`${where}: no /health healthcheck`);
    else if (Number(healthPort) !== config.listen.port) {
      problems.push(`${where}: health-checks port ${healthPort}, listens on ${config.listen.port}`);
    }
    const test = service.healthcheck?.test;
    if (Array.isArray(test) && test[0] === 'CMD' && test[1] === 'node' && test[2] === '-e') {
      try {
        new Script(String(test[3]));
      } catch (error) {
        problems.push(`${where}: healthcheck script does not parse: ${(error as Error).message}`);
      }
    }

    // Its data directory (if the role has one) is a volume of its own: its projection store,
    // blob files or cache are nobody else's.
    if (config.dataDir !== undefined) {
      const dataVolume = volumes.find((v) => v.named && v.target === config.dataDir);
      if (dataVolume === undefined) {
        problems.push(`${where}: dataDir ${config.dataDir} is not a named volume`);
      } else {
        for (const [other, s] of Object.entries(services)) {
          if (other === name) continue;
          if ((s.volumes ?? []).map(parseVolume).some((v) => v.source === dataVolume.source)) {
            problems.push(
              `${where}: its data volume ${dataVolume.source} is also mounted by ${other}`,
            );
          }
        }
      }
    }

    // Its log (if the role has one) is a service of this file, started (healthy) before it.
    const deps = dependsOn(service);
    if (config.log === undefined) continue;
    if (config.log.adapter === 'kafka') {
      for (const broker of config.log.kafka.brokers) {
        const brokerService = advertised.get(broker);
        if (brokerService === undefined) {
          problems.push(`${where}: broker ${broker} is no listener a Kafka service advertises`);
        } else if (deps[brokerService] !== 'service_healthy') {
          problems.push(`${where}: does not wait for ${brokerService} to be healthy`);
        }
      }
      if (config.log.kafka.replicationFactor > Math.max(1, kafkaServices.length)) {
        problems.push(
          `${where}: replicationFactor ${config.log.kafka.replicationFactor} with ` +
            `${kafkaServices.length} broker(s)`,
        );
      }
    } else if (config.log.adapter === 'eventstoredb') {
      const { host, port } = hostPortOf(
        config.log.eventstoredb.connectionString.replace(/^esdb(\+discover)?:/, 'http:'),
      );
      const esdb = services[host];
      const esdbPort = Number(environmentOf(esdb ?? {}).EVENTSTORE_HTTP_PORT ?? 2113);
      if (esdb === undefined) problems.push(`${where}: no EventStoreDB service "${host}"`);
      else if (esdbPort !== port) problems.push(`${where}: EventStoreDB listens on ${esdbPort}`);
      if (deps[host] !== 'service_healthy') {
        problems.push(`${where}: does not wait for ${host} to be healthy`);
      }
      const profiles = (esdb?.profiles ?? []).join(',');
      if ((service.profiles ?? []).join(',') !== profiles || profiles === '') {
        problems.push(`${where}: uses EventStoreDB but is not behind its profile (${profiles})`);
      }
    } else {
      problems.push(`${where}: log.adapter ${config.log.adapter} is no fleet log`);
    }
  }

  if (images.size !== 1) problems.push(`the Shoal services run images ${[...images].join(', ')}`);

  // One cluster per log: services on the same Kafka topic agree on the cluster name.
  const onKafka = configs.filter((c) => c.config.log?.adapter === 'kafka');
  const topics = new Set(onKafka.map((c) => c.config.log?.kafka.topic));
  if (topics.size !== 1) problems.push(`the Kafka services use topics ${[...topics].join(', ')}`);
  const clusters = new Set(onKafka.map((c) => c.config.cluster));
  if (clusters.size !== 1)
    problems.push(`the Kafka services name clusters ${[...clusters].join(', ')}`);

  // The fleet's shape: every role, the log's roles on Kafka, the swarm's beside them.
  const fleet = configs.filter((c) => c.config.log === undefined || onKafka.includes(c));
  const count = (role: string) => fleet.filter((c) => c.role === role).length;
  for (const [role, n] of [
    ['origin', 2],
    ['build-index', 2],
    ['replicator', 1],
    ['proxy', 1],
    ['tracker', 2],
    ['agent', 2],
  ] as const) {
    if (count(role) !== n)
      problems.push(`${n} ${role} in the fleet expected, found ${count(role)}`);
  }
  const ofRole = (role: string) => fleet.filter((c) => c.role === role);

  /** `from` reaches `url`, which must be a service of `role` on its port, started before. */
  const reaches = (from: ConfigOf, url: string, role: string, what: string) => {
    const where = `service ${from.name}`;
    const { host, port } = hostPortOf(url);
    const target = configs.find((c) => c.name === host);
    if (target === undefined || target.role !== role) {
      problems.push(`${where}: ${what} ${url} is no ${role} service`);
      return;
    }
    if (target.config.listen.port !== port) {
      problems.push(`${where}: ${url}, but ${host} listens on ${target.config.listen.port}`);
    }
    const logs = [from, target].map((c) => c.config.log);
    if (
      logs.every((log) => log?.adapter === 'kafka') &&
      logs[0]?.kafka.topic !== logs[1]?.kafka.topic
    ) {
      problems.push(`${where}: ${host} is on another log`);
    }
    if (dependsOn(services[from.name] ?? {})[host] !== 'service_healthy') {
      problems.push(`${where}: does not wait for ${host} to be healthy`);
    }
  };
  /** An advertised URL must be the service's own name and port inside the network. */
  const advertisesItself = (c: ConfigOf) => {
    const expected = `http://${c.name}:${c.config.listen.port}`;
    if (c.config.advertiseUrl !== expected) {
      problems.push(`service ${c.name}: advertiseUrl ${c.config.advertiseUrl}, not ${expected}`);
    }
  };

  // Origins: distinct ids, each advertising its own service address, seeding to the swarm;
  // all writing back to one backend.
  const origins = ofRole('origin');
  const ids = origins.map((o) => o.config.id);
  if (new Set(ids).size !== ids.length) problems.push(`origin ids repeat: ${ids.join(', ')}`);
  for (const o of origins) {
    advertisesItself(o);
    if ((o.config.p2p?.port ?? 0) === 0) {
      problems.push(`service ${o.name}: p2p.port is 0, so it seeds no swarm`);
    }
  }
  const backends = new Set(origins.map((o) => JSON.stringify(o.config.backend)));
  if (backends.size !== 1) problems.push(`the origins write back to different backends`);
  const backend = origins[0]?.config.backend;
  if (backend?.type === 'filesystem') {
    const shared = new Set(
      origins.map(
        (o) =>
          (services[o.name]?.volumes ?? [])
            .map(parseVolume)
            .find((v) => v.named && v.target === backend.path)?.source ?? '(none)',
      ),
    );
    if (shared.size !== 1 || shared.has('(none)')) {
      problems.push(`the origins' filesystem backends are not one shared volume: ${[...shared]}`);
    }
  } else if (backend?.type === 's3') {
    // The store is a service here: its address, its credentials, its bucket made before.
    const { host, port } = hostPortOf(backend.s3.endpoint);
    const store = services[host];
    const storeEnv = environmentOf(store ?? {});
    const listens = /--address\s+\S*:(\d+)/.exec(wordsOf(store?.command).join(' '))?.[1];
    if (store === undefined) problems.push(`the origins' S3 endpoint ${host} is no service`);
    else if (Number(listens ?? 9000) !== port) {
      problems.push(`the S3 service ${host} listens on ${listens ?? 9000}, not ${port}`);
    }
    if (
      storeEnv.MINIO_ROOT_USER !== backend.s3.accessKeyId ||
      storeEnv.MINIO_ROOT_PASSWORD !== backend.s3.secretAccessKey
    ) {
      problems.push(`the origins' S3 credentials are not those of the service ${host}`);
    }
    const makers = Object.entries(services).filter(([, s]) =>
      wordsOf(s.entrypoint ?? s.command).some((w) => w.endsWith(`/${backend.s3.bucket}`)),
    );
    const [maker, makerService] = makers[0] ?? [];
    if (maker === undefined) problems.push(`no service makes the bucket ${backend.s3.bucket}`);
    else {
      if (dependsOn(makerService ?? {})[host] !== 'service_healthy') {
        problems.push(`service ${maker}: does not wait for ${host} to be healthy`);
      }
      const alias = Object.entries(environmentOf(makerService ?? {})).find(([k]) =>
        k.startsWith('MC_HOST_'),
      )?.[1];
      const expected = `http://${backend.s3.accessKeyId}:${backend.s3.secretAccessKey}@${host}:${port}`;
      if (alias !== expected) problems.push(`service ${maker}: reaches the store as ${alias}`);
    }
    for (const o of origins) {
      const deps = dependsOn(services[o.name] ?? {});
      if (deps[host] !== 'service_healthy') {
        problems.push(`service ${o.name}: does not wait for ${host} to be healthy`);
      }
      if (maker !== undefined && deps[maker] !== 'service_completed_successfully') {
        problems.push(`service ${o.name}: does not wait for ${maker} to make the bucket`);
      }
    }
  }

  // The proxy reaches build-index and origins where they listen, on the same log.
  for (const p of ofRole('proxy')) {
    if (p.config.buildIndex?.url) reaches(p, p.config.buildIndex.url, 'build-index', 'buildIndex');
    for (const url of p.config.buildIndex?.urls ?? []) {
      reaches(p, url, 'build-index', 'buildIndex.urls');
    }
    for (const url of p.config.origins?.urls ?? []) reaches(p, url, 'origin', 'origins');
    const replicas = p.config.origins?.replicas ?? 0;
    if (replicas !== origins[0]?.config.replicas) {
      problems.push(
        `service ${p.name}: writes ${replicas} replicas, origins own ${origins[0]?.config.replicas}`,
      );
    }
    if (replicas > origins.length) {
      problems.push(`service ${p.name}: ${replicas} replicas with ${origins.length} origins`);
    }
  }

  // One replicator replicates (build-index's mounted ones are off), reading from an origin:
  // its data directory is its own, so no placement projection is kept beside it.
  const replicating = [...ofRole('replicator'), ...ofRole('build-index')].filter(
    (c) => c.config.replication?.enabled === true,
  );
  if (replicating.length !== 1) {
    problems.push(`${replicating.length} services replicate: ${replicating.map((c) => c.name)}`);
  }
  for (const r of ofRole('replicator')) {
    const source = r.config.replication?.source.originUrl ?? '';
    if (source === '') problems.push(`service ${r.name}: replication.source.originUrl is empty`);
    else reaches(r, source, 'origin', 'replication.source.originUrl');
  }

  // Trackers reach the origins (ring, metainfo) and tell them their own address.
  for (const t of ofRole('tracker')) {
    advertisesItself(t);
    for (const url of t.config.origins?.urls ?? []) reaches(t, url, 'origin', 'origins');
  }

  // Agents: reachable peers, the same trackers for all (each blob's swarm lives on the
  // tracker its digest ranks first among them), tags and manifests where they are served.
  const trackerSets = new Set(ofRole('agent').map((a) => JSON.stringify(a.config.trackers?.urls)));
  if (trackerSets.size > 1) problems.push(`the agents name different trackers`);
  for (const a of ofRole('agent')) {
    const where = `service ${a.name}`;
    if ((a.config.p2p?.port ?? 0) === 0) problems.push(`${where}: p2p.port is 0 (any port)`);
    if (a.config.p2p?.advertiseHost !== a.name) {
      problems.push(`${where}: peers dial ${a.config.p2p?.advertiseHost || '(none)'}`);
    }
    for (const url of a.config.trackers?.urls ?? []) reaches(a, url, 'tracker', 'trackers');
    if (a.config.buildIndex?.url) reaches(a, a.config.buildIndex.url, 'build-index', 'buildIndex');
    for (const url of a.config.buildIndex?.urls ?? []) {
      reaches(a, url, 'build-index', 'buildIndex.urls');
    }
    if (a.config.proxy?.url) reaches(a, a.config.proxy.url, 'proxy', 'proxy');
  }

  // Profiles: nothing always-on depends on a profiled service.
  for (const [name, service] of Object.entries(services)) {
    if ((service.profiles ?? []).length > 0) continue;
    for (const dep of Object.keys(dependsOn(service))) {
      if ((services[dep]?.profiles ?? []).length > 0) {
        problems.push(`service ${name}: depends on ${dep}, which is behind a profile`);
      }
      if (services[dep] === undefined) problems.push(`service ${name}: depends on unknown ${dep}`);
    }
  }

  // Published host ports are distinct; volumes are declared and used.
  const published = Object.entries(services).flatMap(([name, s]) =>
    (s.ports ?? []).map((p) => ({ name, host: parsePort(p).host })),
  );
  const seen = new Map<string, string>();
  for (const { name, host } of published) {
    const other = seen.get(host);
    if (other !== undefined) problems.push(`services ${other} and ${name} both publish ${host}`);
    seen.set(host, name);
  }
  for (const v of usedVolumes)
    if (!declaredVolumes.has(v)) problems.push(`volume ${v} is not declared`);
  for (const v of declaredVolumes) if (!usedVolumes.has(v)) problems.push(`volume ${v} is unused`);
  return { problems, configs };
};

describe('docker-compose.yml is in step with the configuration', () => {
  const composeText = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
  const configDir = join(root, 'deploy/compose');
  const options = {
    composeDir: root,
    dockerfile: readFileSync(join(root, 'Dockerfile'), 'utf8'),
  };
  const check = (compose: Compose) => checkCompose(compose, options).problems;

  it('parses, and every Shoal service config exists and validates against its role schema', () => {
    const compose = readCompose(composeText);
    const { problems, configs } = checkCompose(compose, options);
    expect(problems).toEqual([]);
    expect(
      configs.map((c) => `${c.name}:${c.role}:${c.config.log?.adapter ?? 'no log'}`).sort(),
    ).toEqual([
      'agent-1:agent:no log',
      'agent-2:agent:no log',
      'build-index-1:build-index:kafka',
      'build-index-2:build-index:kafka',
      'build-index-esdb:build-index:eventstoredb',
      'console:console:kafka',
      'origin-1:origin:kafka',
      'origin-2:origin:kafka',
      'proxy:proxy:kafka',
      'replicator:replicator:kafka',
      'tracker-1:tracker:no log',
      'tracker-2:tracker:no log',
    ]);
  });

  it('has Kafka in KRaft mode, and EventStoreDB only behind the eventstoredb profile', () => {
    const { services } = readCompose(composeText);
    const kafka = services.kafka as ComposeService;
    expect(kafka.image).toMatch(/^apache\/kafka:3\.9\./);
    expect(environmentOf(kafka)).toMatchObject({
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
    });
    expect(services.eventstoredb?.profiles).toEqual(['eventstoredb']);
    expect(services['build-index-esdb']?.profiles).toEqual(['eventstoredb']);
  });

  it('writes back to an S3-compatible store (MinIO) whose bucket is made before the origins', () => {
    const { services } = readCompose(composeText);
    expect(services.s3?.image).toMatch(/^minio\/minio:RELEASE\./);
    expect(services['s3-bucket']?.restart).toBe('no');
    const { configs } = checkCompose(readCompose(composeText), options);
    const origins = configs.filter((c) => c.role === 'origin');
    expect(origins.map((o) => o.config.backend?.type)).toEqual(['s3', 's3']);
  });

  it('every config file under deploy/compose is used by a service', () => {
    const { configs } = checkCompose(readCompose(composeText), options);
    const used = new Set(configs.map((c) => resolve(c.file)));
    const files = readdirYaml(configDir).map((f) => resolve(configDir, f));
    expect(files.filter((f) => !used.has(f))).toEqual([]);
  });

  // Each kind of check bites: a broken copy of the file is refused with the reason.
  const mutate = (edit: (compose: Compose) => void) => {
    const compose = readCompose(composeText);
    edit(compose);
    return check(compose);
  };

  it('refuses a config file that is missing or does not validate', () => {
    expect(
      mutate((c) => {
        (c.services['origin-1'] as ComposeService).command = [
          'origin',
          '--config',
          '/etc/shoal/nope.yaml',
        ];
      }),
    ).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/origin-1: config \/etc\/shoal\/nope\.yaml .* does not exist/),
      ]),
    );
    expect(
      mutate((c) => {
        (c.services['build-index-1'] as ComposeService).environment = { SHOAL_LISTEN_PORT: 'x' };
      }),
    ).toEqual(
      expect.arrayContaining([expect.stringMatching(/build-index-1: invalid .*listen\.port/)]),
    );
  });

  it('refuses addresses and ports that do not meet', () => {
    const swapped = mutate((c) => {
      (c.services['build-index-1'] as ComposeService).command = [
        'build-index',
        '--config',
        '/etc/shoal/proxy.yaml',
      ];
    });
    // The loader refuses keys the role does not have, naming them.
    expect(swapped).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /build-index-1: invalid config file .*proxy\.yaml:\n {2}origins: unknown key/,
        ),
      ]),
    );
    const healthPort = mutate((c) => {
      (c.services['build-index-1'] as ComposeService).environment = { SHOAL_LISTEN_PORT: '5009' };
    });
    expect(healthPort).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/build-index-1: health-checks port 5002, listens on 5009/),
      ]),
    );
    const published = mutate((c) => {
      (c.services.proxy as ComposeService).ports = ['5000:5001'];
    });
    expect(published).toEqual([
      expect.stringMatching(/proxy: publishes 5000:5001 but listens on 5000/),
    ]);
    const noBroker = mutate((c) => {
      const kafka = c.services.kafka as ComposeService;
      kafka.environment = {
        ...environmentOf(kafka),
        KAFKA_ADVERTISED_LISTENERS: 'INTERNAL://broker:9092',
      };
    });
    expect(noBroker).toEqual(
      expect.arrayContaining([expect.stringMatching(/proxy: broker kafka:9092 is no listener/)]),
    );
  });

  it('refuses shared data volumes, a profile leak and an undeclared volume', () => {
    const shared = mutate((c) => {
      (c.services['build-index-2'] as ComposeService).volumes = [
        './deploy/compose:/etc/shoal:ro',
        'build-index-1-data:/var/lib/shoal',
      ];
    });
    expect(shared).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /build-index-1: its data volume build-index-1-data is also mounted by build-index-2/,
        ),
        'volume build-index-2-data is unused',
      ]),
    );
    const leak = mutate((c) => {
      delete (c.services['build-index-esdb'] as ComposeService).profiles;
    });
    expect(leak).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/build-index-esdb: uses EventStoreDB but is not behind its profile/),
        expect.stringMatching(
          /build-index-esdb: depends on eventstoredb, which is behind a profile/,
        ),
      ]),
    );
  });

  it('refuses S3 credentials, a bucket or a start order the origins do not meet', () => {
    const wrongSecret = mutate((c) => {
      for (const name of ['origin-1', 'origin-2']) {
        (c.services[name] as ComposeService).environment = {
          SHOAL_BACKEND_S3_ACCESS_KEY_ID: 'shoal',
          SHOAL_BACKEND_S3_SECRET_ACCESS_KEY: 'another',
        };
      }
    });
    expect(wrongSecret).toEqual([
      "the origins' S3 credentials are not those of the service s3",
      expect.stringMatching(/service s3-bucket: reaches the store as http:\/\/shoal:shoal-fleet/),
    ]);
    const noBucket = mutate((c) => {
      (c.services['origin-2'] as ComposeService).depends_on = {
        kafka: { condition: 'service_healthy' },
        s3: { condition: 'service_healthy' },
      };
    });
    expect(noBucket).toEqual(['service origin-2: does not wait for s3-bucket to make the bucket']);
  });

  it('refuses a second replicator and agents that split a swarm or cannot be dialed', () => {
    const twoReplicators = mutate((c) => {
      (c.services['build-index-1'] as ComposeService).environment = {
        SHOAL_REPLICATION_ENABLED: 'true',
      };
    });
    expect(twoReplicators).toEqual([
      expect.stringMatching(/^2 services replicate: .*build-index-1/),
    ]);
    const agents = mutate((c) => {
      (c.services['agent-2'] as ComposeService).environment = {
        SHOAL_TRACKERS_URLS: 'http://tracker-3:5004',
        SHOAL_P2P_ADVERTISE_HOST: '',
      };
    });
    expect(agents).toEqual([
      'the agents name different trackers',
      'service agent-2: peers dial (none)',
      'service agent-2: trackers http://tracker-3:5004 is no tracker service',
    ]);
    const tracker = mutate((c) => {
      (c.services['tracker-2'] as ComposeService).environment = {
        SHOAL_ADVERTISE_URL: 'http://tracker-1:5004',
        SHOAL_ORIGINS_URLS: 'http://origin-1:5013',
      };
    });
    expect(tracker).toEqual([
      'service tracker-2: advertiseUrl http://tracker-1:5004, not http://tracker-2:5004',
      'service tracker-2: http://origin-1:5013, but origin-1 listens on 5003',
    ]);
  });
});

const readdirYaml = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.yaml'));
