import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { AgentConfigSchema } from '../../agent/config';
import type { RunningAgent } from '../../agent/main';
import { startAgent } from '../../agent/main';
import type { TagApi } from '../../build-index/client/tagApi';
import { systemClock } from '../../shared/clock';
import { loadConfig } from '../../shared/config';
import type { RoleSecurity } from '../../shared/security/roleSecurity';
import type { Logger } from '../../shared/logger';
import { TrackerConfigSchema } from '../../tracker/config';
import type { RunningTracker } from '../../tracker/main';
import { startTracker } from '../../tracker/main';
import { configHelp } from '../configHelp';
import { note } from '../output';
import type { GlobalOptions } from './common';
import {
  addDataDirOption,
  claimDataDir,
  parsePort,
  explainRoleListenError,
  roleSecurityOf,
  runUntilSignal,
  serviceLogger,
} from './common';

type AgentOptions = GlobalOptions & {
  config?: string;
  id?: string;
  host?: string;
  port?: number;
  peerPort?: number;
  tracker?: string[];
  exitWithParent?: boolean;
};

/** What a child agent sends its parent over IPC once it listens (`shoal dev --agents`). */
export type AgentReadyMessage = {
  readonly type: 'shoal-agent-ready';
  readonly id: string;
  readonly url: string;
  readonly peerAddress: string;
};

/**
 * Resolves once the process that started this one is gone: its IPC channel closed (the
 * parent exited, even by SIGKILL), or this process was re-parented (checked every second,
 * for parents without a channel). `dispose` stops watching so the process can exit.
 */
const watchParent = (): { gone: Promise<string>; dispose: () => void } => {
  const ppid = process.ppid;
  let timer: NodeJS.Timeout | undefined;
  let onDisconnect: (() => void) | undefined;
  const gone = new Promise<string>((resolve) => {
    timer = setInterval(() => {
      if (process.ppid !== ppid) resolve(`parent process ${ppid} exited`);
    }, 1000);
    timer.unref();
    if (process.channel !== undefined) {
      onDisconnect = () => resolve(`parent process ${ppid} closed its channel`);
      process.once('disconnect', onDisconnect);
    }
  });
  return {
    gone,
    dispose: () => {
      clearInterval(timer);
      if (onDisconnect !== undefined) process.off('disconnect', onDisconnect);
      if (process.connected) process.disconnect();
    },
  };
};

export const registerAgentCommands = (program: Command): void => {
  addDataDirOption(program.command('agent'))
    .description(
      'run an agent: a read-only registry on this host for containerd and docker, which ' +
        'fetches blobs through the swarm (pieces from other agents and origins)',
    )
    .option('--config <file>', 'YAML configuration file')
    .option('--id <id>', 'agent id (overrides id)')
    .option('--host <host>', 'registry listen address (overrides listen.host)')
    .option('--port <port>', 'registry listen port (overrides listen.port)', parsePort)
    .option('--peer-port <port>', 'peer port (overrides p2p.port)', parsePort)
    .option('--tracker <url...>', 'tracker URLs (override trackers.urls)')
    .option(
      '--exit-with-parent',
      'stop when the process that started this one exits, even by SIGKILL (its IPC ' +
        'channel closes, or this process is re-parented): `shoal dev --agents` uses it',
    )
    .addHelpText('after', configHelp(AgentConfigSchema))
    .action(async (options: AgentOptions) => {
      const config = loadConfig(AgentConfigSchema, {
        ...(options.config !== undefined && { file: options.config }),
        overrides: {
          ...(options.dataDir !== undefined && { dataDir: options.dataDir }),
          ...(options.id !== undefined && { id: options.id }),
          listen: { host: options.host, port: options.port },
          ...(options.peerPort !== undefined && { p2p: { port: options.peerPort } }),
          ...(options.tracker !== undefined && { trackers: { urls: options.tracker } }),
        },
      });
      // Watch from the start: a parent that dies while we start up is noticed too.
      const parent = options.exitWithParent === true ? watchParent() : undefined;
      let disposeSecurity: (() => void) | undefined;
      try {
        const logger = serviceLogger({ level: config.logLevel, name: 'agent' });
        const { lock } = claimDataDir(
          config.dataDir,
          {
            kind: 'role',
            role: 'agent',
            id: config.id,
            cluster: 'agent',
            withParent: options.exitWithParent === true,
          },
          `shoal agent ${config.id}`,
        );
        let security: RoleSecurity;
        try {
          const made = roleSecurityOf(config, { role: 'agent', name: config.id }, logger);
          security = made.security;
          disposeSecurity = made.dispose;
        } catch (error) {
          lock.release();
          throw error;
        }
        const agent = await startAgent({ config, logger, clock: systemClock, security }).catch(
          (error: unknown) => {
            lock.release();
            throw explainRoleListenError(error, 'agent', config, {
              what: 'peer port',
              flag: '--peer-port or ',
            });
          },
        );
        lock.update({ agent: agent.url, peer: agent.peerAddress });
        note(`agent ${agent.id} listening on ${agent.url} (peer port ${agent.peerAddress})`);
        if (process.send !== undefined && process.connected) {
          const ready: AgentReadyMessage = {
            type: 'shoal-agent-ready',
            id: agent.id,
            url: agent.url,
            peerAddress: agent.peerAddress,
          };
          // A parent gone meanwhile is noticed by the watcher; the error needs no handling.
          process.send(ready, undefined, undefined, () => undefined);
        }
        await runUntilSignal(
          async () => {
            await agent.close();
            lock.release();
          },
          parent?.gone.then((reason) => `agent ${agent.id}: ${reason}`),
        );
      } finally {
        parent?.dispose();
        disposeSecurity?.();
      }
    });
};

/** A free TCP port on `host` (for roles whose port 0 means "off", like the origin seeder). */
export const freePort = (host = '127.0.0.1'): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });

/**
 * The dev cluster's swarm side: a tracker over the dev origin and one agent whose registry
 * resolves tags in-process and reads manifests from the proxy.
 */
export const startDevSwarm = async (deps: {
  host: string;
  trackerPort: number;
  agentPort: number;
  agentPeerPort: number;
  dataDir: string;
  originUrl: string;
  proxyUrl: string;
  tags: TagApi;
  logger: Logger;
  /** `shoal dev --secure`: TLS and cluster identities for both. */
  security?: { tracker: RoleSecurity; agent: RoleSecurity };
}): Promise<{ tracker: RunningTracker; agent: RunningAgent; close: () => Promise<void> }> => {
  const tracker = await startTracker({
    config: loadConfig(TrackerConfigSchema, {
      env: {},
      overrides: {
        listen: { host: deps.host, port: deps.trackerPort },
        origins: { urls: [deps.originUrl] },
      },
    }),
    logger: deps.logger.child({ role: 'tracker' }),
    clock: systemClock,
    ...(deps.security !== undefined && { security: deps.security.tracker }),
  });
  try {
    const agent = await startAgent({
      config: loadConfig(AgentConfigSchema, {
        env: {},
        overrides: {
          dataDir: deps.dataDir,
          listen: { host: deps.host, port: deps.agentPort },
          p2p: { port: deps.agentPeerPort },
          trackers: { urls: [tracker.url] },
          proxy: { url: deps.proxyUrl },
        },
      }),
      logger: deps.logger.child({ role: 'agent' }),
      clock: systemClock,
      tags: deps.tags,
      ...(deps.security !== undefined && { security: deps.security.agent }),
    });
    return {
      tracker,
      agent,
      close: async () => {
        await agent.close();
        await tracker.close();
      },
    };
  } catch (error) {
    await tracker.close();
    throw error;
  }
};
