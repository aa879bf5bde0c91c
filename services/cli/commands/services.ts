import { writeFileSync } from 'node:fs';
import type { Static, TObject } from '@sinclair/typebox';
import type { Command } from 'commander';
import { Option } from 'commander';
import type { Clock, EventLog, ProjectionStore } from '../../../domain';
import { ShoalError } from '../../../domain';
import { createTagService } from '../../build-index/tagService';
import type { BlobAccess } from '../../origin/client/blobAccess';
import { createBlobAccess, staticRing } from '../../origin/client/createBlobAccess';
import type { OriginConfig } from '../../origin/config';
import { createOriginBackends } from '../../origin/backendConfig';
import { OriginConfigSchema } from '../../origin/config';
import { startOrigin } from '../../origin/main';
import type { ProxyConfig } from '../../proxy/config';
import { ProxyConfigSchema } from '../../proxy/config';
import { startProxy } from '../../proxy/main';
import { systemClock } from '../../shared/clock';
import { loadConfig } from '../../shared/config';
import type { LogConfig } from '../../shared/logConfig';
import type { Logger, LogLevel } from '../../shared/logger';
import { logLevels } from '../../shared/logger';
import type { AuthConfig } from '../../shared/security/authConfig';
import type { RoleSecurity, RoleSecurityConfig } from '../../shared/security/roleSecurity';
import type { ServiceRole } from '../../shared/security/subject';
import { explainListenError } from '../listenErrors';
import type { LocalState } from '../compose';
import { openLocalState } from '../compose';
import { configHelp } from '../configHelp';
import { note } from '../output';
import { freePort, startDevSwarm } from './agent';
import type { GlobalOptions } from './common';
import {
  addDataDirOption,
  claimDataDir,
  explainRoleListenError,
  dataDirOf,
  parseLogLevel,
  parsePort,
  roleSecurityOf,
  runUntilSignal,
  serviceLogger,
} from './common';
import { ConsoleConfigSchema } from '../../console/config';
import { consoleRole, startConsoleRole } from './console';
import type { DevAgentProcess } from './devAgents';
import type { DevSecurity } from './devSecurity';
import type { DevUsers } from './devUsers';
import { createDevUsers } from './devUsers';
import { createDevSecurity } from './devSecurity';
import type { BuildIndexRoleConfig } from './replicator';
import { BuildIndexRoleConfigSchema, replicatorRole, startBuildIndexRole } from './replicator';
import {
  checkDevPorts,
  devAgentPorts,
  devPortRemedy,
  devPortRole,
  maxDevAgents,
  parseAgentCount,
  startDevAgentProcess,
} from './devAgents';

/**
 * `shoal <role> [--config FILE] [--host H] [--port P]` for a role that runs on the data
 * directory's log and projection store: loads its config, starts it, runs until a signal.
 */
const registerRoleCommand = <S extends TObject>(
  program: Command,
  role: {
    name: ServiceRole;
    description: string;
    schema: S;
    start: (deps: {
      config: Static<S>;
      logger: Logger;
      clock: Clock;
      log: EventLog;
      store: ProjectionStore;
      security: RoleSecurity;
    }) => Promise<{ url: string; close: () => Promise<void> }>;
  },
): void => {
  addDataDirOption(program.command(role.name))
    .description(role.description)
    .option('--config <file>', 'YAML configuration file')
    .option('--host <host>', 'listen address (overrides listen.host)')
    .option('--port <port>', 'listen port (overrides listen.port)', parsePort)
    .addHelpText('after', configHelp(role.schema))
    .action(async (options: GlobalOptions & { config?: string; host?: string; port?: number }) => {
      const config = loadConfig(role.schema, {
        ...(options.config !== undefined && { file: options.config }),
        overrides: {
          ...(options.dataDir !== undefined && { dataDir: options.dataDir }),
          listen: { host: options.host, port: options.port },
        },
      }) as Static<S> &
        RoleSecurityConfig & {
          cluster: string;
          dataDir: string;
          log: LogConfig;
          logLevel: LogLevel;
          listen: { port: number };
        };
      const logger = serviceLogger({ level: config.logLevel, name: role.name });
      const { lock } = claimDataDir(
        config.dataDir,
        { kind: 'role', role: role.name, cluster: config.cluster },
        `shoal ${role.name}`,
      );
      let made: ReturnType<typeof roleSecurityOf>;
      try {
        made = roleSecurityOf(config, { role: role.name }, logger);
      } catch (error) {
        lock.release();
        throw error;
      }
      const { security, dispose } = made;
      const state = await openLocalState({
        dataDir: config.dataDir,
        log: config.log,
        create: true,
      }).catch((error: unknown) => {
        dispose();
        lock.release();
        throw error;
      });
      const service = await role
        .start({ config, logger, clock: systemClock, log: state.log, store: state.store, security })
        .catch(async (error: unknown) => {
          await state.close();
          dispose();
          lock.release();
          throw explainRoleListenError(error, role.name, config);
        });
      lock.update({ [role.name]: service.url });
      note(`${role.name} listening on ${service.url} (data directory ${state.dataDir.root})`);
      await runUntilSignal(async () => {
        await service.close();
        await state.close();
        dispose();
        lock.release();
      });
    });
};

export const registerServiceCommands = (program: Command): void => {
  registerRoleCommand(program, {
    name: 'build-index',
    description: 'run the build-index service (tags API, tag history, projections)',
    schema: BuildIndexRoleConfigSchema,
    start: startBuildIndexRole,
  });
  registerRoleCommand(program, replicatorRole);
  registerRoleCommand(program, consoleRole);
  registerRoleCommand(program, {
    name: 'proxy',
    description: 'run the proxy: the OCI Distribution API (push and pull) at /v2/',
    schema: ProxyConfigSchema,
    // Without buildIndex.url the proxy keeps tags itself, with build-index's tag service.
    start: (deps) => startProxy({ ...deps, localTags: createTagService }),
  });

  addDataDirOption(program.command('dev'))
    .description(
      'run a whole cluster in one process on the embedded log and local disk: ' +
        'proxy, build-index, an origin, a tracker, an agent (more agents with --agents, ' +
        'as child processes) and the web console',
    )
    .option(
      '--port-base <port>',
      'first port: proxy P, agent P+1, build-index P+2, origin P+3, tracker P+4, ' +
        'origin peer port P+5, agent peer port P+6, console P+7; 0: ports the system picks',
      parsePort,
      5000,
    )
    .option(
      '--agents <n>',
      `agents in the swarm (1–${maxDevAgents}): agent 1 in this process, the others as ` +
        'child `shoal agent` processes (agent n: registry P+2n+6, peer port P+2n+7)',
      parseAgentCount,
      1,
    )
    .option('--host <host>', 'listen address for every role', '127.0.0.1')
    .option('--cluster <name>', 'cluster name stamped on events', 'default')
    .option(
      '--secure',
      'TLS on every listener with a cluster CA made under <data-dir>/certs, internal APIs ' +
        'for cluster identities only, and logins: an admin with a password printed at start ' +
        '(as production runs)',
    )
    .option(
      '--log-level <level>',
      `${logLevels.join(' | ')} (default: $SHOAL_LOG_LEVEL, else warn on a terminal, info ` +
        'when the output is a pipe or a file)',
      (text: string) => parseLogLevel(text),
    )
    // Not an option of dev: taken only to point at --port-base (commander would suggest --host).
    .addOption(new Option('--port <port>').hideHelp())
    .addHelpText(
      'after',
      [
        '',
        'Logs: readable lines on a terminal, JSON lines (pino) when stdout is a pipe or a file',
        '(SHOAL_LOG_FORMAT=json|pretty to choose). The summary of addresses comes last.',
        'The data directory belongs to this process while it runs (<data-dir>/locks/): a',
        'second dev, or a role process, on the same directory is refused, naming this one.',
        '',
        'Agents (--agents N): agent 1 runs in this process (registry P+1, peer port P+6).',
        'Agent n = 2…N runs as a child process `shoal agent --config',
        '<data-dir>/agents/agent-<n>/agent.yaml` (written at each start; cache in',
        '<data-dir>/agent-<n>/) with registry P+2n+6 and peer port P+2n+7 (agent 2: P+10',
        'and P+11, agent 3: P+12 and P+13, …); a port base whose last port would pass 65535',
        'is refused. Children use the dev tracker, build-index and proxy like agent 1, and',
        'ignore SHOAL_* variables as it does. They stop with dev (SIGINT/SIGTERM), and exit',
        'by themselves if dev is killed (their IPC channel to it closes). Every registry URL',
        'is listed, in order, under "agents" in <data-dir>/endpoints.json.',
        '',
      ].join('\n'),
    )
    .action(
      async (
        options: GlobalOptions & {
          portBase: number;
          agents: number;
          host: string;
          cluster: string;
          secure?: boolean;
          logLevel?: LogLevel;
          port?: string;
        },
      ) => {
        if (options.port !== undefined) {
          throw new ShoalError(
            'PARAMETER_INVALID',
            'shoal dev has no --port: it runs every role on --port-base P and the ports after ' +
              'it (proxy P, agent P+1, build-index P+2, origin P+3, tracker P+4, P+5, P+6); ' +
              `e.g. --port-base ${options.port}`,
          );
        }
        checkDevPorts(options.portBase, options.agents);
        // Ctrl-C from the moment dev starts (a person may press it as the summary appears):
        // without a listener Node would die of the signal, skipping the orderly stop.
        const interrupted = new Promise<string>((resolve) => {
          const onSignal = (signal: NodeJS.Signals) => resolve(signal);
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
        });
        const dataDir = dataDirOf(options);
        const envLevel = process.env.SHOAL_LOG_LEVEL;
        const level: LogLevel =
          options.logLevel ??
          (envLevel !== undefined && envLevel !== ''
            ? parseLogLevel(envLevel, 'SHOAL_LOG_LEVEL')
            : process.stdout.isTTY
              ? 'warn'
              : 'info');
        const port = (offset: number) => (options.portBase === 0 ? 0 : options.portBase + offset);
        const common = { cluster: options.cluster, dataDir };
        const buildIndexConfig: BuildIndexRoleConfig = loadConfig(BuildIndexRoleConfigSchema, {
          env: {},
          overrides: {
            ...common,
            listen: { host: options.host, port: port(2) },
            // A dev cluster replicates to other registries on this machine only.
            replication: { allowedDestinations: loopbackDestinations },
          },
        });
        const proxyConfig: ProxyConfig = loadConfig(ProxyConfigSchema, {
          env: {},
          overrides: { ...common, listen: { host: options.host, port: port(0) } },
        });
        // Synchronous: the summary printed once started must come after every line before it.
        const logger = serviceLogger({ level, name: 'shoal-dev', sync: true });
        const { lock } = claimDataDir(
          dataDir,
          { kind: 'cluster', cluster: options.cluster },
          'shoal dev',
        );
        const closers: Array<() => Promise<void>> = [async () => lock.release()];
        const closeAll = async () => {
          for (const close of closers.splice(0).reverse()) await close();
        };
        try {
          const state = await openLocalState({ dataDir, log: buildIndexConfig.log, create: true });
          closers.push(() => state.close());
          const secure: DevSecurity | undefined =
            options.secure === true
              ? createDevSecurity(state.dataDir.root, options.host, logger)
              : undefined;
          if (secure !== undefined) closers.push(async () => secure.close());
          const securityOf = (role: ServiceRole) =>
            secure === undefined ? {} : { security: secure.of(role) };
          // Users: an admin (a fresh password each start), for the proxy, build-index and
          // the console.
          const users = secure === undefined ? undefined : createDevUsers(state.dataDir.root);
          const withUsers = <C extends { auth: AuthConfig }>(config: C): C =>
            users === undefined
              ? config
              : {
                  ...config,
                  auth: {
                    ...config.auth,
                    ...users.auth,
                    token: { ...config.auth.token, ...users.auth.token },
                  },
                };
          const buildIndex = await startBuildIndexRole({
            config: withUsers(buildIndexConfig),
            logger: logger.child({ role: 'build-index' }),
            clock: systemClock,
            log: state.log,
            store: state.store,
            ...securityOf('build-index'),
          });
          closers.push(buildIndex.close);
          const writer = { clock: systemClock, cluster: options.cluster, actor: 'proxy' };
          const origin = await startDevOrigin({
            host: options.host,
            port: port(3),
            p2pPort: port(5) || (await freePort(options.host)),
            cluster: options.cluster,
            dataDir,
            state,
            logger: logger.child({ role: 'origin' }),
            ...securityOf('origin'),
          });
          closers.push(origin.close);
          const tags = createTagService({
            log: state.log,
            store: state.store,
            writer,
            waitFor: (position) =>
              buildIndex.runner.waitFor(position, buildIndexConfig.readYourWrites.timeoutMs),
          });
          const proxy = await startProxy({
            config: withUsers(proxyConfig),
            logger: logger.child({ role: 'proxy' }),
            clock: systemClock,
            log: state.log,
            store: state.store,
            blobs: origin.blobs,
            tags,
            ...securityOf('proxy'),
          });
          closers.push(proxy.close);
          // The swarm: a tracker (P+4) and agent 1 (registry P+1, peer port P+6) in process.
          const first = devAgentPorts(options.portBase, 1);
          const swarm = await startDevSwarm({
            host: options.host,
            trackerPort: port(4),
            agentPort: first.registry,
            agentPeerPort: first.peer,
            dataDir,
            originUrl: origin.url,
            proxyUrl: proxy.url,
            tags,
            logger,
            ...(secure !== undefined && {
              security: { tracker: secure.of('tracker'), agent: secure.of('agent') },
            }),
          });
          closers.push(swarm.close);
          // Agents 2…N as child processes, started together; each is stopped (before the
          // tracker and the proxy they use) whether or not it got as far as listening.
          const children: DevAgentProcess[] = [];
          closers.push(async () => {
            await Promise.all(children.map((child) => child.stop()));
          });
          for (let n = 2; n <= options.agents; n += 1) {
            children.push(
              startDevAgentProcess({
                n,
                dataDir: state.dataDir.root,
                host: options.host,
                ports: devAgentPorts(options.portBase, n),
                trackerUrl: swarm.tracker.url,
                buildIndexUrl: buildIndex.url,
                proxyUrl: proxy.url,
                logLevel: level,
                ...(secure !== undefined && { extraConfig: secure.agentConfig() }),
              }),
            );
          }
          const childUrls = await Promise.all(children.map((child) => child.ready));
          const agentUrls = [swarm.agent.url, ...childUrls];
          const consoleConfig = loadConfig(ConsoleConfigSchema, {
            env: {},
            overrides: {
              ...common,
              listen: { host: options.host, port: port(7) },
              services: {
                proxyUrl: proxy.url,
                buildIndexUrl: buildIndex.url,
                origins: [origin.url],
                trackers: [swarm.tracker.url],
                agents: agentUrls,
              },
            },
          });
          const web = await startConsoleRole({
            config: withUsers(consoleConfig),
            logger: logger.child({ role: 'console' }),
            clock: systemClock,
            log: state.log,
            ...securityOf('console'),
          });
          closers.push(web.close);
          const endpoints = {
            proxy: proxy.url,
            buildIndex: buildIndex.url,
            origins: [origin.url],
            trackers: [swarm.tracker.url],
            agents: agentUrls,
            console: web.url,
          };
          writeFileSync(state.dataDir.endpointsPath, `${JSON.stringify(endpoints, null, 2)}\n`);
          lock.update({
            proxy: proxy.url,
            'build-index': buildIndex.url,
            origin: origin.url,
            tracker: swarm.tracker.url,
            ...Object.fromEntries(agentUrls.map((url, i) => [`agent ${i + 1}`, url])),
          });
          const registry = proxy.url
            .replace(/^https?:\/\//, '')
            .replace(/^127\.0\.0\.1:/, 'localhost:');
          note(
            [
              ...(secure === undefined
                ? [
                    '!!! shoal dev: ACCESS IS OPEN — plain HTTP, no authentication: anyone ' +
                      'who reaches these ports can push, pull, delete and replicate. For ' +
                      'development on loopback only; `shoal dev --secure` runs it with TLS ' +
                      'and cluster identities (README, "Security").',
                  ]
                : []),
              `shoal dev: cluster "${options.cluster}", data directory ${state.dataDir.root}`,
              `  proxy        ${proxy.url}   (OCI registry: docker://${registry}/…)`,
              `  build-index  ${buildIndex.url}`,
              `  origin       ${origin.url}`,
              `  tracker      ${swarm.tracker.url}`,
              ...(agentUrls.length === 1
                ? [`  agent        ${swarm.agent.url}   (pull through the swarm: docker://…)`]
                : agentUrls.map(
                    (url, i) =>
                      `  ${`agent ${i + 1}`.padEnd(12)} ${url}   ` +
                      (i === 0
                        ? '(in this process; pull through the swarm: docker://…)'
                        : `(pid ${children[i - 1]?.pid ?? '?'}, ${children[i - 1]?.configPath})`),
                  )),
              `  console      ${web.url}   (the web console)`,
              `  endpoints    ${state.dataDir.endpointsPath}`,
              '',
              ...(secure === undefined
                ? [
                    'push and pull an image (plain HTTP on loopback):',
                    `  skopeo copy --dest-tls-verify=false oci:./img:v1 docker://${registry}/demo/app:v1`,
                    `  skopeo copy --src-tls-verify=false docker://${registry}/demo/app:v1 oci:./pulled:v1`,
                    `  crane ls ${registry}/demo/app`,
                    `  shoal tags history demo/app:v1 --url ${buildIndex.url}`,
                  ]
                : devSecureLines(secure, users as DevUsers, registry, buildIndex.url)),
              '',
              `logs: ${level}${level === 'warn' ? ' and worse (--log-level info for more)' : ''}` +
                '; Ctrl-C stops the cluster',
            ].join('\n'),
          );
        } catch (error) {
          await closeAll();
          throw explainListenError(
            error,
            (port) => devPortRole(options.portBase, options.agents, port),
            () => devPortRemedy(options.portBase, options.agents),
          );
        }
        await runUntilSignal(closeAll, interrupted);
      },
    );
};

/** Registries on this machine, as replication destinations: `http(s)://localhost[:port]`, … */
const loopbackDestinations = ['http', 'https'].flatMap((scheme) =>
  ['127.0.0.1', 'localhost', '[::1]'].flatMap((host) => [
    `${scheme}://${host}`,
    `${scheme}://${host}:*`,
  ]),
);

/**
 * The dev cluster's origin: the real service on its port, with the filesystem backend under
 * the data directory, and the proxy's view of it (a ring of one).
 */
const startDevOrigin = async (deps: {
  host: string;
  port: number;
  p2pPort: number;
  cluster: string;
  dataDir: string;
  state: LocalState;
  logger: Logger;
  security?: RoleSecurity;
}): Promise<{ url: string; blobs: BlobAccess; close: () => Promise<void> }> => {
  const config: OriginConfig = loadConfig(OriginConfigSchema, {
    env: {},
    overrides: {
      cluster: deps.cluster,
      dataDir: deps.dataDir,
      listen: { host: deps.host, port: deps.port },
      p2p: { port: deps.p2pPort },
    },
  });
  const backends = createOriginBackends(config, deps.state.dataDir.root);
  const origin = await startOrigin({
    config,
    logger: deps.logger,
    clock: systemClock,
    log: deps.state.log,
    store: deps.state.store,
    ...backends,
    ...(deps.security !== undefined && { security: deps.security }),
  });
  const blobs = createBlobAccess({
    ring: staticRing([{ id: origin.id, url: origin.url }]),
    replicas: config.replicas,
    preferredOrigin: origin.id,
    // In one process the proxy reaches its origin without an HTTP hop (same API, same errors).
    connect: (endpoint) => (endpoint.id === origin.id ? origin.client : undefined),
  });
  return {
    url: origin.url,
    blobs,
    close: async () => {
      await blobs.close();
      await origin.close();
    },
  };
};

/** What `shoal dev --secure` prints: where the CA is, the admin, clients that check the CA. */
const devSecureLines = (
  secure: DevSecurity,
  users: DevUsers,
  registry: string,
  buildIndexUrl: string,
) => {
  const cli = secure.certs.roles.cli as { certFile: string; keyFile: string };
  const { user, password } = users.admin;
  return [
    `TLS on every listener, cluster CA ${secure.certs.caFile}; internal APIs take cluster`,
    `identities only (certificates and the service key in ${secure.certs.dir}).`,
    `  login        ${user} / ${password}   (an admin; a new password at every start)`,
    'log in, then push and pull an image, checking the CA:',
    `  skopeo login --cert-dir ${secure.clientCertDir} -u ${user} -p ${password} ${registry}`,
    `  skopeo copy --dest-cert-dir ${secure.clientCertDir} oci:./img:v1 docker://${registry}/demo/app:v1`,
    `  skopeo copy --src-cert-dir ${secure.clientCertDir} docker://${registry}/demo/app:v1 oci:./pulled:v1`,
    `  docker: sudo mkdir -p /etc/docker/certs.d/${registry} && ` +
      `sudo cp ${secure.certs.caFile} /etc/docker/certs.d/${registry}/ca.crt; ` +
      `docker login ${registry}`,
    `  npx shoal tags history demo/app:v1 --url ${buildIndexUrl} --ca-file ${secure.certs.caFile} ` +
      `--cert-file ${cli.certFile} --key-file ${cli.keyFile}`,
  ];
};
