import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { Script } from 'node:vm';
import type { TObject, TSchema } from '@sinclair/typebox';
import { parse as parseYaml, parseDocument } from 'yaml';
import { BuildIndexConfigSchema } from '../../services/build-index/config';
import { OriginConfigSchema } from '../../services/origin/config';
import { ProxyConfigSchema } from '../../services/proxy/config';
import { loadConfig } from '../../services/shared/config';
import type { LogConfig } from '../../services/shared/logConfig';

// docker-compose.yml cannot run here (no Docker engine), so this keeps it in step with the
// real configuration: every Shoal service's config file exists, validates against its role's
// schema (with no key the schema does not know), and the addresses, ports, volumes and
// profiles that services name of each other agree. `checkCompose` returns problems, so the
// mutations at the end can show that each kind of check bites.

const root = resolve(__dirname, '../..');

const roleSchemas: Record<string, TObject> = {
  'build-index': BuildIndexConfigSchema,
  origin: OriginConfigSchema,
  proxy: ProxyConfigSchema,
};

type Compose = {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
};
type ComposeService = {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[] | string;
  environment?: Record<string, unknown> | string[];
  ports?: Array<string | number>;
  volumes?: string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  profiles?: string[];
  healthcheck?: { test?: string[] | string };
};

/** The roles' configs, as loaded by the services: file, then the service's environment. */
type ConfigOf = { role: string; name: string; file: string; config: RoleConfig };

/** What the checks read of any role's config (each role's schema has a subset of these). */
type RoleConfig = {
  cluster: string;
  dataDir: string;
  listen: { host: string; port: number };
  log: LogConfig;
  id?: string;
  advertiseUrl?: string;
  replicas?: number;
  backend?: { path: string };
  buildIndex?: { url: string };
  origins?: { urls: string[]; replicas: number };
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

/** Key paths in `value` that `schema` does not declare (TypeBox lets extra keys through). */
const unknownKeys = (schema: TSchema, value: unknown, path = ''): string[] => {
  if (schema.type !== 'object' || schema.properties === undefined) return [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  const properties = schema.properties as Record<string, TSchema>;
  return Object.entries(value).flatMap(([key, child]) => {
    const at = path === '' ? key : `${path}.${key}`;
    const childSchema = properties[key];
    return childSchema === undefined ? [at] : unknownKeys(childSchema, child, at);
  });
};

const hostPortOf = (url: string) => {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || 80) };
};

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
    for (const key of unknownKeys(
      roleSchemas[role] as TObject,
      parseYaml(readFileSync(file, 'utf8')),
    )) {
      problems.push(
        `${where}: ${containerPath} has "${key}", which the ${role} schema does not know`,
      );
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

    // Its data directory is a volume of its own (its projection store is nobody else's).
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

    // Its log is a service of this file, started (healthy) before it.
    const deps = dependsOn(service);
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
  const onKafka = configs.filter((c) => c.config.log.adapter === 'kafka');
  const topics = new Set(onKafka.map((c) => c.config.log.kafka.topic));
  if (topics.size !== 1) problems.push(`the Kafka services use topics ${[...topics].join(', ')}`);
  const clusters = new Set(onKafka.map((c) => c.config.cluster));
  if (clusters.size !== 1)
    problems.push(`the Kafka services name clusters ${[...clusters].join(', ')}`);

  // The fleet's shape: two origins, two build-index and a proxy on Kafka.
  const count = (role: string) => onKafka.filter((c) => c.role === role).length;
  for (const [role, n] of [
    ['origin', 2],
    ['build-index', 2],
    ['proxy', 1],
  ] as const) {
    if (count(role) !== n) problems.push(`${n} ${role} on Kafka expected, found ${count(role)}`);
  }

  // Origins: distinct ids, each advertising its own service address; one shared backend.
  const origins = onKafka.filter((c) => c.role === 'origin');
  const ids = origins.map((o) => o.config.id);
  if (new Set(ids).size !== ids.length) problems.push(`origin ids repeat: ${ids.join(', ')}`);
  for (const o of origins) {
    const expected = `http://${o.name}:${o.config.listen.port}`;
    if (o.config.advertiseUrl !== expected) {
      problems.push(`service ${o.name}: advertiseUrl ${o.config.advertiseUrl}, not ${expected}`);
    }
  }
  const backendVolumes = new Set(
    origins.map((o) => {
      const mounted = (services[o.name]?.volumes ?? []).map(parseVolume);
      return (
        mounted.find((v) => v.named && v.target === o.config.backend?.path)?.source ?? '(none)'
      );
    }),
  );
  if (backendVolumes.size !== 1 || backendVolumes.has('(none)')) {
    problems.push(
      `the origins' filesystem backends are not one shared volume: ${[...backendVolumes]}`,
    );
  }

  // The proxy reaches build-index and origins where they listen, on the same log.
  for (const p of onKafka.filter((c) => c.role === 'proxy')) {
    const where = `service ${p.name}`;
    const targets: Array<{ url: string; role: string }> = [
      ...(p.config.buildIndex?.url ? [{ url: p.config.buildIndex.url, role: 'build-index' }] : []),
      ...(p.config.origins?.urls ?? []).map((url) => ({ url, role: 'origin' })),
    ];
    for (const { url, role } of targets) {
      const { host, port } = hostPortOf(url);
      const target = configs.find((c) => c.name === host);
      if (target === undefined || target.role !== role) {
        problems.push(`${where}: ${url} is no ${role} service`);
        continue;
      }
      if (target.config.listen.port !== port) {
        problems.push(`${where}: ${url}, but ${host} listens on ${target.config.listen.port}`);
      }
      if (target.config.log.kafka.topic !== p.config.log.kafka.topic) {
        problems.push(`${where}: ${host} is on another log`);
      }
      if (dependsOn(services[p.name] ?? {})[host] !== 'service_healthy') {
        problems.push(`${where}: does not wait for ${host} to be healthy`);
      }
    }
    const replicas = p.config.origins?.replicas ?? 0;
    if (replicas !== origins[0]?.config.replicas) {
      problems.push(
        `${where}: writes ${replicas} replicas, origins own ${origins[0]?.config.replicas}`,
      );
    }
    if (replicas > origins.length) {
      problems.push(`${where}: ${replicas} replicas with ${origins.length} origins`);
    }
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
    expect(configs.map((c) => `${c.name}:${c.role}:${c.config.log.adapter}`).sort()).toEqual([
      'build-index-1:build-index:kafka',
      'build-index-2:build-index:kafka',
      'build-index-esdb:build-index:eventstoredb',
      'origin-1:origin:kafka',
      'origin-2:origin:kafka',
      'proxy:proxy:kafka',
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
    expect(swapped).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/build-index-1: .*proxy\.yaml has "origins"/),
        expect.stringMatching(/build-index-1: health-checks port 5002, listens on 5000/),
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
});

const readdirYaml = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.yaml'));
